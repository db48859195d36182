"""Report by exception through a running gateway: real Modbus devices (the catalogue's door
controller, climate sensor and people counter, served by their simulators) polled every
second of branch time. Unchanged readings are not written but counted (``gateway status``,
the health reading); state changes, counter steps and moves beyond a point's deadband are
written; each series is written again at the heartbeat; a restart writes each series' first
reading. The filter's rules table by table: tests/edge/telemetry/test_changes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from openbranch.edge.cli import main as openbranch
from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.core.yamlsource import ConfigError, parse_yaml, validate
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.edge.telemetry.outbox import Outbox
from openbranch.integrations.modbus.profile import CATALOGUE, ModbusProfile
from openbranch.integrations.mqtt.profile import CATALOGUE as MQTT_CATALOGUE
from tests.services import free_port
from tests.support.waiting import until

START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SPEED = 20.0  # a branch second is 50 ms: the door is polled 20 times a real second
HEARTBEAT = 120.0  # branch seconds: 6 real seconds
BAND = CATALOGUE.get("vaisala-gmw90").point("temperature").deadband


def config_dict(tmp_path: Path) -> dict[str, object]:
    port = free_port()

    def device(id_: str, profile: str, unit: int) -> dict[str, object]:
        transport = {"type": "modbus_tcp", "host": "127.0.0.1", "port": port, "unit_id": unit}
        return {"id": id_, "profile": profile, "transport": transport, "poll": {"default": "1s"}}

    return {
        "branch": {"id": "rbe", "name": "Report by exception"},
        "store": {"path": str(tmp_path / "outbox.db"), "heartbeat": f"{HEARTBEAT:g}s"},
        "devices": [
            device("door", "moxa-iologik-e1214", 1),
            device("climate", "vaisala-gmw90", 2),
            device("counter", "moxa-iologik-e1210-counter", 3),
        ],
    }


def lines(outbox: Outbox, measurement: str, device: str) -> list[str]:
    return [e.line for e in outbox.lines(measurement=measurement) if e.device == device]


def health_suppressed(outbox: Outbox) -> Iterator[int]:
    for line in lines(outbox, schema.GATEWAY.name, schema.GATEWAY_DEVICE):
        for part in line.split(" ")[1].split(","):
            key, _, value = part.partition("=")
            if key == schema.GATEWAY_SUPPRESSED.key:
                yield int(value.rstrip("i"))


def test_unchanged_readings_are_counted_not_written_and_every_change_is_written(
    tmp_path: Path,
) -> None:
    assert BAND > 0, "the climate sensor's profile declares a temperature deadband"
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config_dict(tmp_path)), encoding="utf-8")
    config = GatewayConfig.model_validate(config_dict(tmp_path))
    registry = default_registry()
    clock = ScaledClock(start=START, speed=SPEED)
    outbox = open_outbox(config)
    gateway = Gateway(config=config, registry=registry, clock=clock, outbox=outbox, extensions=[])
    (simulation,) = registry.simulate(config.devices)
    door, climate, counter = (simulation.devices[d] for d in ("door", "climate", "counter"))
    polls = {c.device_id: c for c in gateway.coordinators}

    def polled(device: str, more: int) -> object:
        target = polls[device].stats.polls + more
        return lambda: polls[device].stats.polls >= target

    def has(measurement: str, device: str, text: str) -> object:
        return lambda: any(text in line for line in lines(outbox, measurement, device))

    async def main() -> None:
        door.set("door_open", False)
        door.set("door_locked", True)
        door.set("fire_alarm", False)
        climate.set("temperature", 21.0)
        climate.set("co2", 500)
        climate.set("humidity", 40.0)
        counter.set("entered", 10)
        counter.set("exited", 5)
        await simulation.start()
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await until(polled("door", 20), what="20 polls of the door")
            await until(polled("climate", 20), what="20 polls of the climate sensor")
            await gateway.committer.flush()
            for measurement, device in (
                ("door", "door"),
                ("alert", "door"),  # the fire input: unchanged, so once
                ("indoor", "climate"),
                ("occupancy", "counter"),
            ):
                assert len(lines(outbox, measurement, device)) == 1, (measurement, device)
            suppressed = gateway.committer.changes.suppressed
            assert suppressed["door"] >= 19 and suppressed["alert"] >= 19
            assert suppressed["indoor"] >= 19 and suppressed["occupancy"] >= 19

            climate.set("temperature", 21.0 + BAND / 2)  # within the deadband
            await until(polled("climate", 5), what="5 more polls of the climate sensor")
            await gateway.committer.flush()
            assert len(lines(outbox, "indoor", "climate")) == 1
            moved = round(21.0 + 2 * BAND, 2)
            climate.set("temperature", moved)
            await until(has("indoor", "climate", f"temperature_c={moved}"), what="the move")

            door.set("door_open", True)  # state changes: each written
            await until(has("door", "door", "open=true"), what="the door opened")
            door.set("fire_alarm", True)
            await until(has("alert", "door", "active=true"), what="the fire input raised")
            door.set("fire_alarm", False)
            await until(
                lambda: len(lines(outbox, "alert", "door")) >= 3, what="the fire input cleared"
            )
            counter.set("entered", 11)  # a counter's step of one: written
            await until(has("occupancy", "counter", "entered=11i"), what="the counter step")

            # the heartbeat: the counter's series again, unchanged, a heartbeat after its step
            before = len(lines(outbox, "occupancy", "counter"))
            await until(
                lambda: len(lines(outbox, "occupancy", "counter")) > before,
                within=3 * HEARTBEAT / SPEED,
                what="the counter's heartbeat",
            )
            beat = lines(outbox, "occupancy", "counter")[-1]
            assert "entered=11i" in beat
            stamps = [int(x.rsplit(" ", 1)[1]) for x in lines(outbox, "occupancy", "counter")]
            assert stamps[-1] - stamps[-2] >= HEARTBEAT * 1e9
            await until(
                lambda: any(n > 0 for n in health_suppressed(outbox)),
                within=15,
                what="a health reading counting the suppressed readings",
            )
        finally:
            stop.set()
            await task
            await simulation.stop()

    asyncio.run(main())
    total = gateway.committer.changes.suppressed_total
    assert total > 0
    outbox.close()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert openbranch(["gateway", "status", str(path)]) == 0
    status = out.getvalue()
    assert f"suppressed unchanged: {total} readings not written" in status, status
    assert f"heartbeat {HEARTBEAT:g} s" in status


def test_a_restart_writes_the_first_reading_of_each_series_again(tmp_path: Path) -> None:
    config = GatewayConfig.model_validate(config_dict(tmp_path))
    registry = default_registry()
    (simulation,) = registry.simulate(config.devices)
    simulation.devices["door"].set("door_open", False)

    async def run_once() -> int:
        outbox = open_outbox(config)
        gateway = Gateway(
            config=config,
            registry=registry,
            clock=ScaledClock(start=START, speed=SPEED),
            outbox=outbox,
            extensions=[],
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        door = gateway.coordinators[0]
        await until(lambda: door.stats.polls >= 5, what="5 polls of the door")
        stop.set()
        await task
        written = len(lines(outbox, "door", "door"))
        outbox.close()
        return written

    async def main() -> tuple[int, int]:
        await simulation.start()
        try:
            return await run_once(), await run_once()
        finally:
            await simulation.stop()

    first, second = asyncio.run(main())
    assert (first, second) == (1, 2)  # the unchanged door once per run


@pytest.mark.parametrize(
    ("point", "reason"),
    [
        (
            "{id: kwh, table: input, address: 0, type: float32, measurement: energy, "
            "field: register, unit: kWh, deadband: 0.1}",
            "energy.register is a counter: every change of it is written; it has no deadband",
        ),
        (
            "{id: open, table: discrete_input, address: 0, type: bool, measurement: door, "
            "field: open, deadband: 1}",
            "door.open is a bool; it has no deadband",
        ),
        (
            "{id: t, table: input, address: 0, type: int16, scale: 0.1, "
            "measurement: indoor, field: temperature_c, unit: °C, deadband: -1}",
            "greater than or equal to 0",
        ),
    ],
)
def test_a_profile_refuses_a_deadband_where_none_can_apply(point: str, reason: str) -> None:
    text = (
        "id: bad\nmanufacturer: x\nmodel: x\ndatasheet: a register map made for this test\n"
        f"points:\n  - {point}\n"
    )
    with pytest.raises(ConfigError) as refused:
        validate(ModbusProfile, parse_yaml(text, name="bad.yaml"))
    assert reason in str(refused.value)


def test_the_catalogues_give_no_counter_a_deadband() -> None:
    """What the profiles' validation guarantees, over both catalogues (so a profile that
    loads has exact counters)."""
    for catalogue in (CATALOGUE, MQTT_CATALOGUE):
        for profile in catalogue.all().values():
            for series in profile.deadbands():
                field = schema.measurement(series[0]).field(series[1])
                assert not field.counter, (profile.id, series)
