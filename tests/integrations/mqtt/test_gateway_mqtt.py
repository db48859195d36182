"""MQTT devices through a real Mosquitto into a running gateway: readings arrive, every bad
payload kind is counted and refused, the gateway keeps running, and its status topics hold."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from paho.mqtt.enums import MQTTProtocolVersion

from openbranch.edge.core.clock import SystemClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from tests.mqttwatch import Seen, Watcher, retained
from tests.services import Mosquitto
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[3]


def config_for(broker: Mosquitto, tmp_path: Path) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "branch": {"id": "mqtt-branch", "name": "MQTT test branch"},
            "mqtt": {"host": broker.host, "port": broker.port, "keepalive": 5},
            "store": {"path": str(tmp_path / "outbox.db")},
            "devices": [
                {
                    "id": "counter",
                    "profile": "xovis-pc-line-count",
                    "transport": {"type": "mqtt", "topic": "xovis/pc-12/counts"},
                },
                {
                    "id": "front-door",
                    "profile": "aqara-door-contact",
                    "transport": {"type": "mqtt", "topic": "zigbee2mqtt/front-door"},
                },
                {
                    "id": "help",
                    "profile": "aqara-help-button",
                    "transport": {"type": "mqtt", "topic": "zigbee2mqtt/help-button"},
                },
            ],
        }
    )


async def started(gateway: Gateway, sim: Any, stop: asyncio.Event) -> asyncio.Task[None]:
    """Run ``gateway`` until ``stop``, start the simulated devices, and return once the
    gateway's session is connected and its subscriptions have settled."""
    run = asyncio.create_task(gateway.run(stop))
    await sim.start()
    await until(lambda: gateway.mqtt is not None, within=5, what="the gateway's MQTT session")
    assert gateway.mqtt is not None and await gateway.mqtt.wait_subscribed(), "no MQTT session"
    return run


BAD = {
    "invalid UTF-8": b"\xff\xfe",
    "invalid JSON": b'{"lines": [',
    "not a number": b'{"lines": [{"fw": NaN, "bw": 1}]}',
    "not an object": b"[1]",
    "oversize": b'{"x": "' + b"y" * 70_000 + b'"}',
    "too deep": b'{"a":' * 50 + b"1" + b"}" * 50,
    "wrong type": b'{"lines": [{"fw": "7", "bw": 1}]}',
    "missing field": b'{"lines": [{"bw": 1}]}',
}


def test_gateway_reads_mqtt_devices_and_survives_bad_payloads(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = config_for(mosquitto, tmp_path)
    registry = default_registry()
    outbox = open_outbox(config)
    gateway = Gateway(config=config, registry=registry, clock=SystemClock(), outbox=outbox)
    (sim,) = registry.simulate(config.devices, mqtt=config.mqtt)
    counter = next(c for c in gateway.coordinators if c.device_id == "counter")

    def committed(device: str, field: str) -> bool:
        return any(field in e.line for e in outbox.lines(device=device))

    async def main() -> None:
        stop = asyncio.Event()
        run = await started(gateway, sim, stop)
        assert gateway.mqtt is not None
        assert gateway.mqtt.protocol is MQTTProtocolVersion.MQTTv5
        devices = sim.devices
        devices["counter"].set("entered", 12)
        devices["counter"].set("exited", 9)
        devices["front-door"].set("open", True)
        devices["help"].set("pressed", True)
        await until(lambda: committed("counter", "entered=12i"), what="entered=12 committed")
        counter_sim: Any = devices["counter"]
        for i, (kind, payload) in enumerate(BAD.items(), start=1):
            counter_sim.publish_raw("xovis/pc-12/counts", payload)
            await until(lambda i=i: counter.stats.rejected >= i, within=2, what=kind)
            assert counter.stats.rejected == i, f"{kind} was not counted"
            assert kind in counter.stats.rejected_reasons, counter.stats.rejected_reasons
        assert not run.done()  # still running
        devices["counter"].set("entered", 13)  # a good message after all that
        await until(lambda: committed("counter", "entered=13i"), what="entered=13 committed")
        stop.set()
        await run
        await sim.stop()

    asyncio.run(main())
    lines = [e.line for e in outbox.lines(device="counter")]
    assert any("entered=12i" in line for line in lines)
    assert any("entered=13i" in line for line in lines)
    assert not any('"7"' in line for line in lines)
    door = [e.line for e in outbox.lines(device="front-door")]
    assert any("open=true" in line for line in door)
    help_call = [e.line for e in outbox.lines(device="help")]
    assert any(line.startswith("alert,") and "kind=help_call" in line for line in help_call)
    state = json.loads(retained(mosquitto, "openbranch/mqtt-branch/counter/state") or b"{}")
    assert state["occupancy"]["entered"] == 13
    assert retained(mosquitto, "openbranch/mqtt-branch/status") == b"offline"  # clean stop
    outbox.close()


def test_birth_and_last_will(mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = config_for(mosquitto, tmp_path)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")), encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "openbranch.edge.cli", "gateway", "run", str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while retained(mosquitto, "openbranch/mqtt-branch/status") != b"online":
            assert time.monotonic() < deadline, "no retained online birth message"
        proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sends the last will
        proc.wait(10)
        deadline = time.monotonic() + 15
        while retained(mosquitto, "openbranch/mqtt-branch/status") != b"offline":
            assert time.monotonic() < deadline, "no retained offline last will"
    finally:
        proc.kill()
        proc.wait()


def test_a_state_held_back_by_the_rate_limit_goes_out_within_a_second(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Two counts 0.1 s apart and then silence: the second goes out on the retained state
    topic about a second after the first, while the gateway still runs, not with a next count."""
    config = config_for(mosquitto, tmp_path)
    registry = default_registry()
    outbox = open_outbox(config)
    gateway = Gateway(config=config, registry=registry, clock=SystemClock(), outbox=outbox)
    (sim,) = registry.simulate(config.devices, mqtt=config.mqtt)
    topic = "openbranch/mqtt-branch/counter/state"
    arrived: dict[int, float] = {}  # entered -> when the state carrying it arrived
    running_when_21_arrived: list[bool] = []

    def entered(seen: list[Seen]) -> set[int]:
        states = [json.loads(m.payload) for m in seen if m.topic == topic]
        return {s["occupancy"]["entered"] for s in states if "occupancy" in s}

    async def main() -> None:
        stop = asyncio.Event()
        run = await started(gateway, sim, stop)
        counter = sim.devices["counter"]
        with Watcher(mosquitto.host, mosquitto.port, topic) as watcher:
            counter.set("entered", 20)
            await asyncio.to_thread(watcher.wait_for, lambda seen: 20 in entered(seen))
            arrived[20] = time.monotonic()
            counter.set("entered", 21)  # within the second: held back
            await asyncio.to_thread(watcher.wait_for, lambda seen: 21 in entered(seen))
            arrived[21] = time.monotonic()
            running_when_21_arrived.append(not run.done())
        stop.set()
        await run
        await sim.stop()

    asyncio.run(main())
    outbox.close()
    assert running_when_21_arrived == [True]
    assert 0.8 <= arrived[21] - arrived[20] <= 2.0, arrived  # the timer's second, not later
