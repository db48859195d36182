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
from tests.mqttwatch import Watcher, retained, retained_all
from tests.services import Mosquitto
from tests.support.waiting import until

pytestmark = pytest.mark.services

BRANCH = "pub"
NODE = f"homeassistant/+/openbranch_{BRANCH}/+/config"


def config_for(
    broker: Mosquitto, tmp_path: Path, *, branch: str = BRANCH, **extra: Any
) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "branch": {"id": branch, "name": "Publisher test"},
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

    watcher = Watcher(mosquitto.host, mosquitto.port, NODE)
    last = {**discovery(config), stale: b"", gone_down.topic: b""}  # what the gateway sends

    async def body(gateway: Gateway) -> None:
        ext = await ready(gateway)
        assert ext.removed == sorted([stale, gone_down.topic])
        await until(
            lambda: all(watcher.payloads(t)[-1:] == [p] for t, p in last.items()),
            10,
            "the configs and the emptied ones at the broker",
        )

    try:
        asyncio.run(run_gateway(config, body))
    finally:
        watcher.close()
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
    watcher = Watcher(mosquitto.host, mosquitto.port, NODE)

    async def body(gateway: Gateway) -> None:
        await ready(gateway)

        def each_seen(times: int) -> bool:
            return all(len(watcher.payloads(t)) >= times for t in messages)

        await until(lambda: each_seen(1), 5, "the discovery configs")
        await asyncio.to_thread(watcher.sync)  # and anything the gateway sent before them
        assert {t: watcher.payloads(t) for t in messages} == {t: [p] for t, p in messages.items()}
        await asyncio.to_thread(watcher.publish, "homeassistant/status", b"online")
        await until(lambda: each_seen(2), 5, "the discovery configs again")
        await asyncio.to_thread(watcher.sync)
        assert {t: watcher.payloads(t) for t in messages} == {
            t: [p, p] for t, p in messages.items()
        }
        gateway.journal.alert(
            "outbox_dropped", "dropped 3 oldest readings", severity="critical", active=True
        )
        alert = alert_entity(config, "outbox_dropped")
        await until(lambda: bool(watcher.payloads(alert.topic)), 5, "the alert's entity")
        await asyncio.to_thread(watcher.sync)
        assert watcher.payloads(alert.topic) == [alert.encode()]
        assert {t: len(watcher.payloads(t)) for t in messages} == dict.fromkeys(messages, 2)

    try:
        asyncio.run(run_gateway(config, body))
    finally:
        watcher.close()


def test_switched_off_publishes_no_discovery(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Beside it, from after it connected until before it stops, runs a control gateway with
    discovery on: once the control's configs are at the broker, a switched-off extension would
    have published too (it waits the same window after connecting, and connected first); only
    the control's node has any."""
    config = config_for(mosquitto, tmp_path / "off", homeassistant={"enabled": False})
    control = config_for(mosquitto, tmp_path / "on", branch="control")
    assert discovery(control)  # the control has configs to publish
    watcher = Watcher(mosquitto.host, mosquitto.port, "homeassistant/#")

    async def body(gateway: Gateway) -> None:
        assert gateway.extensions == []
        session = gateway.mqtt
        assert session is not None
        await until(lambda: session.connected, 10, "the switched-off gateway connected")
        await run_gateway(control, ready_to_stop)

    async def ready_to_stop(gateway: Gateway) -> None:
        await ready(gateway)
        await until(
            lambda: all(watcher.payloads(t) for t in discovery(control)),
            10,
            "the control's configs at the broker",
        )

    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    try:
        asyncio.run(run_gateway(config, body))
        seen = watcher.sync()
    finally:
        watcher.close()
    assert retained(mosquitto, f"openbranch/{BRANCH}/status") == b"offline"  # it ran, and ended
    assert {m.topic: m.payload for m in seen} == discovery(control)  # nothing from ours
    assert retained_all(mosquitto, "homeassistant/#") == discovery(control)


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
