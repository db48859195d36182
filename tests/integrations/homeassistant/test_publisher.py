"""The discovery extension in a running gateway on a real Mosquitto: stale configs emptied,
alert entities kept and added, discovery published again when Home Assistant comes online,
nothing at all when switched off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openbranch.edge.core.clock import SystemClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.integrations.homeassistant import HomeAssistantDiscovery, alert_entity, discovery
from tests.mqttwatch import Watcher, retained_all
from tests.services import Mosquitto

pytestmark = pytest.mark.services

BRANCH = "pub"
NODE = f"homeassistant/+/openbranch_{BRANCH}/+/config"


def config_for(broker: Mosquitto, tmp_path: Path, **extra: Any) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "branch": {"id": BRANCH, "name": "Publisher test"},
            "mqtt": {"host": broker.host, "port": broker.port, "keepalive": 5},
            "store": {"path": str(tmp_path / "outbox.db")},
            "devices": [
                {
                    "id": "front-door",
                    "profile": "aqara-door-contact",
                    "transport": {"type": "mqtt", "topic": "zigbee2mqtt/front-door"},
                }
            ],
            **extra,
        }
    )


async def run_gateway(config: GatewayConfig, body: Callable[[Gateway], Awaitable[None]]) -> None:
    outbox = open_outbox(config)
    gateway = Gateway(
        config=config, registry=default_registry(), clock=SystemClock(), outbox=outbox
    )
    stop = asyncio.Event()
    run = asyncio.create_task(gateway.run(stop))
    try:
        await body(gateway)
    finally:
        stop.set()
        await run
        outbox.close()


async def ready(gateway: Gateway) -> HomeAssistantDiscovery:
    (ext,) = gateway.extensions
    assert isinstance(ext, HomeAssistantDiscovery)
    async with asyncio.timeout(10):
        await ext.ready.wait()
    return ext


def test_stale_configs_are_emptied_and_alert_entities_kept(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = config_for(mosquitto, tmp_path)
    stale = f"homeassistant/sensor/openbranch_{BRANCH}/old-meter_import_kwh_total/config"
    kept = alert_entity(config, "outbox_dropped")
    kept_down = alert_entity(config, "device_down:front-door")  # a device still configured
    gone_down = alert_entity(config, "device_down:old-meter")  # a device taken out
    other = "homeassistant/sensor/openbranch_other/old-meter_import_kwh_total/config"
    for topic, payload in (
        (stale, b'{"name": "old"}'),
        (kept.topic, kept.encode()),
        (kept_down.topic, kept_down.encode()),
        (gone_down.topic, gone_down.encode()),
        (other, b"{}"),
    ):
        with Watcher(mosquitto.host, mosquitto.port, "unused") as publisher:
            publisher.publish(topic, payload, retain=True)

    async def body(gateway: Gateway) -> None:
        ext = await ready(gateway)
        assert ext.removed == sorted([stale, gone_down.topic])
        await asyncio.sleep(0.3)

    asyncio.run(run_gateway(config, body))
    now = retained_all(mosquitto, "homeassistant/#")
    assert stale not in now  # emptied
    assert now[kept.topic] == kept.encode()  # an alert entity of an earlier run stays
    assert now[kept_down.topic] == kept_down.encode()  # also its configured device's down alert
    assert gone_down.topic not in now  # not the down alert of a device taken out
    assert other in now  # another branch's node is not ours to touch
    earlier = (kept.topic, kept_down.topic, other)
    assert {t: p for t, p in now.items() if t not in earlier} == discovery(config)


def test_home_assistant_online_brings_discovery_again_and_alerts_get_entities(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = config_for(mosquitto, tmp_path)
    messages = discovery(config)
    topic = next(iter(messages))
    watcher = Watcher(mosquitto.host, mosquitto.port, NODE)

    async def body(gateway: Gateway) -> None:
        await ready(gateway)
        await asyncio.sleep(0.3)
        before = len(watcher.payloads(topic))
        assert before == 1
        await asyncio.to_thread(watcher.publish, "homeassistant/status", b"online")
        for _ in range(50):
            if len(watcher.payloads(topic)) > before:
                break
            await asyncio.sleep(0.05)
        assert watcher.payloads(topic)[-1] == messages[topic]
        assert len(watcher.payloads(topic)) == before + 1
        gateway.journal.alert(
            "outbox_dropped", "dropped 3 oldest readings", severity="critical", active=True
        )
        alert = alert_entity(config, "outbox_dropped")
        for _ in range(50):
            if watcher.payloads(alert.topic):
                break
            await asyncio.sleep(0.05)
        assert watcher.payloads(alert.topic) == [alert.encode()]

    try:
        asyncio.run(run_gateway(config, body))
    finally:
        watcher.close()


def test_switched_off_publishes_no_discovery(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = config_for(mosquitto, tmp_path, homeassistant={"enabled": False})

    async def body(gateway: Gateway) -> None:
        assert gateway.extensions == []
        for _ in range(100):
            if gateway.mqtt is not None and gateway.mqtt.connected:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)

    asyncio.run(run_gateway(config, body))
    assert retained_all(mosquitto, "homeassistant/#") == {}
    assert retained_all(mosquitto, f"openbranch/{BRANCH}/status") != {}  # the gateway did run


def test_a_spoofed_gateway_state_creates_no_entities(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Anyone who can publish the gateway's state topic (a broker without the rendered ACL)
    sends 2,000 made-up alert keys: no discovery config is created for them; an alert the
    gateway itself raises still gets its entity, after them (the marker)."""
    config = config_for(mosquitto, tmp_path)
    spoofed = {f"alert/made_up_{i}": {"active": True} for i in range(2000)}
    raised = alert_entity(config, "outbox_dropped")
    watcher = Watcher(mosquitto.host, mosquitto.port, NODE)

    async def body(gateway: Gateway) -> None:
        ext = await ready(gateway)
        state = f"openbranch/{BRANCH}/gateway/state"
        payload = json.dumps(spoofed).encode()
        await asyncio.to_thread(watcher.publish, state, payload, retain=True)
        gateway.journal.alert("outbox_dropped", "dropped 3", severity="critical", active=True)
        await asyncio.to_thread(
            watcher.wait_for, lambda seen: any(m.topic == raised.topic for m in seen)
        )
        assert set(ext.alerts) == {raised.topic}

    try:
        asyncio.run(run_gateway(config, body))
    finally:
        watcher.close()
    made_up = [t for t in retained_all(mosquitto, "homeassistant/#") if "made_up" in t]
    assert made_up == []
