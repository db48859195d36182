"""MQTT devices through a private Mosquitto into coordinators: simulated products publish,
readings arrive with the gateway's time and the right tags, every kind of bad payload is
counted with its reason and never stops the listener, and commands reach a lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.clock import SystemClock
from openbranch.edge.core.command import Command, CommandError
from openbranch.edge.core.config import DeviceConfig, MqttConfig
from openbranch.edge.core.device import DeviceUnreachable
from openbranch.edge.core.reading import Reading
from openbranch.edge.core.registry import BuildContext
from openbranch.edge.runtime.coordinator import Coordinator
from openbranch.edge.runtime.mqtt import MqttSession
from openbranch.integrations.mqtt import MqttDevice, MqttDriver
from openbranch.integrations.mqtt.simulator import MqttSimulation, SimulatedMqttDevice
from tests.mqttwatch import Watcher
from tests.services import Mosquitto
from tests.support.waiting import until

BRANCH = "mqtt-branch"
DEVICES = [
    ("counter", "xovis-pc-line-count", "xovis/pc-12/counts", None),
    (
        "axis",
        "axis-object-analytics-crossline",
        "axis/ACCC8E012345/event/CameraApplicationPlatform/ObjectAnalytics",
        None,
    ),
    ("front-door", "aqara-door-contact", "zigbee2mqtt/front-door", None),
    ("staff-door", "danalock-v3-zigbee", "zigbee2mqtt/staff-door", None),
    ("help", "aqara-help-button", "zigbee2mqtt/help-button", "entrance"),
]
CONFIGS = [
    DeviceConfig.model_validate(
        {"id": i, "profile": p, "zone": z, "transport": {"type": "mqtt", "topic": t}}
    )
    for i, p, t, z in DEVICES
]


@dataclass
class Branch:
    session: MqttSession
    devices: dict[str, MqttDevice]
    coordinators: dict[str, Coordinator]
    sims: dict[str, SimulatedMqttDevice]
    readings: list[Reading]

    def of(self, device: str) -> list[Reading]:
        return [r for r in self.readings if r.device == device]


@asynccontextmanager
async def branch(
    broker: Mosquitto, configs: Sequence[DeviceConfig] = CONFIGS
) -> AsyncIterator[Branch]:
    """A session, one coordinator per device (running), and the simulated products."""
    mqtt = MqttConfig(host=broker.host, port=broker.port, keepalive=5)
    session = MqttSession(mqtt, branch=BRANCH)
    driver = MqttDriver()
    context = BuildContext(branch=BRANCH, clock=SystemClock(), mqtt=session)
    readings: list[Reading] = []
    devices = {c.id: driver.build(c, context) for c in configs}
    coordinators = {
        i: Coordinator(source=d, clock=SystemClock(), emit=readings.extend)
        for i, d in devices.items()
    }
    tasks = [asyncio.create_task(c.run()) for c in coordinators.values()]
    assert await session.connect()
    assert await session.wait_subscribed()
    simulation = driver.simulate(configs, mqtt=mqtt)
    assert isinstance(simulation, MqttSimulation)
    await simulation.start()
    try:
        yield Branch(session, devices, coordinators, dict(simulation.devices), readings)
    finally:
        assert not any(t.done() for t in tasks), "a listener stopped"
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await simulation.stop()
        await session.close()


def fields(readings: Sequence[Reading], measurement: schema.Measurement) -> dict[str, Any]:
    """The latest value of each field of ``measurement`` in ``readings``."""
    out: dict[str, Any] = {}
    for r in readings:
        if r.measurement is measurement:
            out.update(r.fields)
    return out


def test_simulated_products_become_readings(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        async with branch(mosquitto) as b:
            start = datetime.now(UTC)
            b.sims["counter"].set("entered", 12)
            b.sims["counter"].set("exited", 9)
            b.sims["axis"].set("entered", 40)
            b.sims["axis"].set("exited", 31)
            b.sims["front-door"].set("open", True)
            b.sims["staff-door"].set("locked", True)
            b.sims["help"].set("pressed", True)
            await until(
                lambda: (
                    fields(b.of("counter"), schema.OCCUPANCY) == {"entered": 12, "exited": 9}
                    and fields(b.of("axis"), schema.OCCUPANCY) == {"entered": 40, "exited": 31}
                    and fields(b.of("front-door"), schema.DOOR) == {"open": True}
                    and fields(b.of("staff-door"), schema.DOOR) == {"locked": True}
                    and bool(b.of("help"))
                )
            )
            assert all(c.stats.rejected == 0 for c in b.coordinators.values())
            assert all(c.available for c in b.coordinators.values())
            (press,) = b.of("help")
            assert press.measurement is schema.ALERT
            assert press.tags == {"kind": "help_call"}  # alert has no zone tag
            assert dict(press.fields) == {
                "active": True,
                "severity": "critical",
                "message": "help requested at the help-call button",
            }
            for r in b.readings:
                assert r.branch == BRANCH
                assert r.time.tzinfo is UTC
                assert start <= r.time <= datetime.now(UTC)
            assert b.coordinators["counter"].last[("occupancy", "entered")][0] == 12

            b.sims["help"].set("pressed", True)  # a second press is a second call
            await until(lambda: len(b.of("help")) == 2)
            assert b.devices["axis"].describe_plan() == (
                "axis: MQTT axis/ACCC8E012345/event/CameraApplicationPlatform/ObjectAnalytics/"
                "{Device1Scenario1,Device1Scenario2} (2 points)"
            )
            assert b.devices["front-door"].describe_plan() == (
                "front-door: MQTT zigbee2mqtt/front-door (1 point)"
            )

    asyncio.run(main())


# Each bad payload on the counter's topic and the reason kind it is counted under. A message
# with one bad point still delivers its good one (exited).
BAD: list[tuple[str, bytes]] = [
    ("invalid UTF-8", b'{"lines": [{"fw": "\xff"}]}'),
    ("invalid JSON", b'{"lines": [{"fw": 1,'),
    ("not a number", b'{"lines": [{"fw": NaN, "bw": 1}]}'),
    ("not a number", b'{"lines": [{"fw": Infinity, "bw": 1}]}'),
    ("not a number", b'{"lines": [{"fw": -Infinity, "bw": 1}]}'),
    ("not an object", b"[1, 2, 3]"),
    ("oversize", b'{"pad": "' + b"x" * 70_000 + b'"}'),
    ("too deep", b'{"a":' * 60 + b"1" + b"}" * 60),
    ("wrong type", b'{"lines": [{"fw": "7", "bw": 1}]}'),
    ("wrong type", b'{"lines": [{"fw": true, "bw": 1}]}'),
    ("missing field", b'{"lines": [{"bw": 1}]}'),
]


def test_every_bad_payload_is_counted_and_the_listener_goes_on(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        async with branch(mosquitto, CONFIGS[:1]) as b:
            counter, sim = b.coordinators["counter"], b.sims["counter"]
            for n, (kind, payload) in enumerate(BAD, start=1):
                sim.publish_raw("xovis/pc-12/counts", payload)
                await until(lambda n=n: counter.stats.rejected >= n)
                assert counter.stats.rejected == n, kind
            expected: dict[str, int] = {}
            for kind, _ in BAD:
                expected[kind] = expected.get(kind, 0) + 1
            assert counter.stats.rejected_reasons == expected
            assert not any(r.fields.get("entered") is not None for r in b.readings), (
                "a bad value became a reading"
            )
            # a good message after all that: plausible after the exits (1) some of them
            # carried, as the gateway checks counters (edge.core.plausible)
            sim.set("exited", 5)
            sim.set("entered", 121)
            await until(
                lambda: fields(b.readings, schema.OCCUPANCY) == {"entered": 121, "exited": 5}
            )
            assert counter.stats.rejected == len(BAD)

    asyncio.run(main())


def test_the_listener_survives_a_failing_consumer(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        async with branch(mosquitto, CONFIGS[2:3]) as b:
            coordinator = b.coordinators["front-door"]
            calls: list[int] = []

            def flaky(readings: Sequence[Reading]) -> None:
                calls.append(len(readings))
                if len(calls) == 1:
                    raise RuntimeError("the outbox hiccups")
                b.readings.extend(readings)

            coordinator._emit = flaky
            b.sims["front-door"].set("open", True)
            await until(lambda: len(calls) == 1)
            b.sims["front-door"].set("open", False)
            await until(lambda: fields(b.readings, schema.DOOR) == {"open": False})

    asyncio.run(main())


def test_a_retained_device_message_is_refused(mosquitto: Mosquitto) -> None:
    with Watcher(mosquitto.host, mosquitto.port, "unused") as publisher:
        publisher.publish("zigbee2mqtt/front-door", b'{"contact": false}', retain=True)

    async def main() -> None:
        async with branch(mosquitto, CONFIGS[2:3]) as b:
            coordinator = b.coordinators["front-door"]
            await until(lambda: coordinator.stats.rejected == 1)
            assert coordinator.stats.rejected_reasons == {"retained": 1}
            assert b.readings == []

    asyncio.run(main())


def test_a_command_reaches_the_lock_and_its_state_comes_back(mosquitto: Mosquitto) -> None:
    now = datetime.now(UTC)

    def command(point: str, value: bool) -> Command:
        return Command(
            device="staff-door",
            point=point,
            value=value,
            reason="closing",
            who="test",
            issued_at=now,
            expires_at=now + timedelta(minutes=1),
        )

    async def main() -> None:
        async with branch(mosquitto, CONFIGS[3:4]) as b:
            lock, sim = b.devices["staff-door"], b.sims["staff-door"]
            watcher = await asyncio.to_thread(
                Watcher, mosquitto.host, mosquitto.port, "zigbee2mqtt/staff-door/set"
            )
            assert await lock.write(command("locked", True)) is True
            seen = await asyncio.to_thread(watcher.wait_for, bool)
            assert seen[0].payload == b'{"state": "LOCK"}'
            await until(lambda: sim.get("locked") is True)
            await until(lambda: fields(b.readings, schema.DOOR) == {"locked": True})
            await lock.write(command("locked", False))
            await until(lambda: fields(b.readings, schema.DOOR) == {"locked": False})
            await asyncio.to_thread(watcher.close)

            with pytest.raises(CommandError):
                await b.devices["staff-door"].write(command("nothing", True))
        door = MqttDriver().build(
            CONFIGS[3], BuildContext(branch=BRANCH, clock=SystemClock(), mqtt=None)
        )
        with pytest.raises(DeviceUnreachable):
            await door.write(command("locked", True))

    asyncio.run(main())
