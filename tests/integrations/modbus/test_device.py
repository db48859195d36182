"""A Modbus device polled over real Modbus TCP, against simulators built from a profile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymodbus.constants import ExcCodes

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock, SystemClock
from openbranch.edge.core.command import Command, CommandError
from openbranch.edge.core.config import DeviceConfig
from openbranch.edge.core.yamlsource import parse_yaml, validate
from openbranch.edge.runtime.coordinator import Coordinator
from openbranch.integrations.modbus.device import ModbusDevice
from openbranch.integrations.modbus.profile import ModbusPoint, ModbusProfile
from openbranch.integrations.modbus.register import Table
from openbranch.integrations.modbus.simulator import ModbusSimulator, SimulatedUnit
from openbranch.integrations.modbus.transport import Bus
from tests.services import free_port

PROFILE = """\
id: test-meter
manufacturer: OpenBranch
model: Test meter
datasheet: a register map made for these tests
tags: {carrier: electricity}
holes:
  - {table: input, start: 20, end: 29}
points:
  - {id: voltage, table: input, address: 0, type: float32, measurement: energy, field: voltage_v, unit: V}
  - {id: current, table: input, address: 6, type: float32, measurement: energy, field: current_a, unit: A}
  - {id: power, table: input, address: 12, type: float32, measurement: energy, field: power_w, unit: W}
  - {id: energy, table: input, address: 30, type: uint32, order: CDAB, scale: 0.1, measurement: energy, field: register, unit: kWh, group: energy, sentinels: [0xFFFFFFFF]}
  - {id: door_open, table: discrete_input, address: 0, type: bool, measurement: door, field: open}
  - {id: door_locked, table: discrete_input, address: 1, type: bool, measurement: door, field: locked}
  - {id: lock_relay, table: coil, address: 0, type: bool, writable: true}
  - {id: level, table: holding, address: 100, type: uint16, scale: 0.5, measurement: light, field: level, unit: "%", writable: true, range: [0, 100], tags: {zone: hall}}
"""


def profile(extra: str = "") -> ModbusProfile:
    return validate(ModbusProfile, parse_yaml(extra + PROFILE, name="test-meter.yaml"))


def device_config(port: int, unit: int = 1, **transport: Any) -> DeviceConfig:
    return DeviceConfig.model_validate(
        {
            "id": f"meter-{unit}",
            "profile": "test-meter",
            "transport": {
                "type": "modbus_tcp",
                "host": "127.0.0.1",
                "port": port,
                "unit_id": unit,
                "timeout": 0.3,
                **transport,
            },
            "poll": {"default": 1, "energy": 5},
        }
    )


Scenario = Callable[[ModbusSimulator, list[ModbusDevice]], Awaitable[None]]


def run_against_simulator(
    scenario: Scenario,
    *,
    units: int = 1,
    clock: Any = None,
    prof: ModbusProfile | None = None,
    **transport: Any,
) -> None:
    """Serve ``units`` simulated meters on one port and poll them through one shared Bus."""

    async def main() -> None:
        port = free_port()
        nonlocal prof
        prof = prof or profile()
        sims = [
            SimulatedUnit(device_id=f"meter-{u}", profile=prof, unit_id=u)
            for u in range(1, units + 1)
        ]
        for sim in sims:
            sim.set("voltage", 230.5)
            sim.set("current", 12.25)
            sim.set("power", 2750.0)
            sim.set("energy", 12345.6)
            sim.set("door_open", True)
            sim.set("level", 40.0)
        rtu = transport.get("type") == "modbus_rtu_over_tcp"
        server = ModbusSimulator(host="127.0.0.1", port=port, units=sims, rtu_framing=rtu)
        await server.start()
        first = device_config(port, **transport)
        bus = Bus(first.transport)  # type: ignore[arg-type]
        devices = [
            ModbusDevice(
                config=device_config(port, unit=u, **transport),
                profile=prof,
                bus=bus,
                branch="test",
                clock=clock or SystemClock(),
            )
            for u in range(1, units + 1)
        ]
        try:
            await scenario(server, devices)
        finally:
            await bus.close()
            await server.stop()

    asyncio.run(main())


def fields_of(readings: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in readings:
        out.update({f"{r.measurement.name}.{k}": v for k, v in r.fields.items()})
    return out


def test_plan_reads_around_the_hole() -> None:
    async def scenario(_: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        (device,) = devices
        assert device.describe_plan().startswith("meter-1: 4 requests, 17 registers, 2 bits")
        tables = sorted((r.table, r.address, r.count) for r in device.requests())
        assert tables == [
            (Table.DISCRETE_INPUT, 0, 2),
            (Table.HOLDING, 100, 1),
            (Table.INPUT, 0, 14),
            (Table.INPUT, 30, 2),
        ]

    run_against_simulator(scenario)


@pytest.mark.parametrize(
    ("spec", "rollover"),
    [
        ({"type": "uint16", "scale": 0.01}, 655.36),  # reads up to 655.35 kWh, then 0
        ({"type": "uint32", "scale": 0.1}, 429_496_729.6),
        ({"type": "uint32"}, 4_294_967_296.0),
        ({"type": "uint64", "scale": 0.001}, 2**64 / 1000),
        ({"type": "int32", "scale": 0.1}, None),  # overflows into negative readings
        ({"type": "int16"}, None),
        ({"type": "float32"}, None),  # floats do not wrap
        ({"type": "float64", "scale": 0.001}, None),
        ({"type": "uint32", "scale": 0.1, "offset": 5.0}, None),  # its zero is not 0
        ({"type": "uint16", "scale": -1.0}, None),
    ],
)
def test_a_points_rollover_is_its_register_width_times_its_scale(
    spec: dict[str, Any], rollover: float | None
) -> None:
    point = ModbusPoint.model_validate(
        {"id": "e", "table": "input", "address": 0, "measurement": "energy"}
        | {"field": "register", "unit": "kWh"}
        | spec
    )
    assert point.rollover == (None if rollover is None else pytest.approx(rollover, rel=1e-15))


def test_the_device_tells_the_rollover_of_each_value_from_its_points() -> None:
    config = device_config(port=1)

    def rollovers(prof: ModbusProfile) -> dict[tuple[str, str], float]:
        device = ModbusDevice(
            config=config, profile=prof, bus=Bus(config.transport), branch="t", clock=SystemClock()
        )
        return dict(device.rollovers())

    assert rollovers(profile()) == {
        ("energy", "register"): pytest.approx(2**32 * 0.1),  # uint32 of 0.1 kWh
        ("light", "level"): 2**16 * 0.5,  # a width, though not a counter: the ledger picks
    }  # voltage, current, power: floats; door: bools
    water = "  - {id: water, table: input, address: 40, type: uint16, scale: 0.001, measurement: energy, field: register, unit: m³, tags: {carrier: water}, group: energy}\n"
    two_counters = validate(ModbusProfile, parse_yaml(PROFILE + water, name="two.yaml"))
    assert rollovers(two_counters) == {("light", "level"): 2**16 * 0.5}  # they disagree: unknown


def test_a_model_that_reads_few_registers_at_a_time_gets_small_requests() -> None:
    """``max_registers`` (e.g. 11 for an RS-485 Carlo Gavazzi EM24): the plan stays within it,
    the simulator refuses a larger read as the device does, and every point is still read."""
    small = profile("max_registers: 5\n")

    async def scenario(server: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        (device,) = devices
        registers = [r for r in device.requests() if not r.table.is_bit]
        assert registers and max(r.count for r in registers) <= 5
        assert (
            len(registers) == 5
        )  # voltage 0-1, current 6-7, power 12-13 (0-13 is 14), energy, level
        assert server.units[1].answer(4, 0, 6) == ExcCodes.ILLEGAL_VALUE
        assert server.units[1].answer(4, 0, 5) != ExcCodes.ILLEGAL_VALUE
        result = await device.poll(["default", "energy"])
        assert result.reached and not result.failures and not result.missing
        assert fields_of(result.readings)["energy.power_w"] == 2750.0

    run_against_simulator(scenario, prof=small)


def test_poll_decodes_every_point_into_schema_readings() -> None:
    async def scenario(_: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        result = await devices[0].poll(["default", "energy"])
        assert result.reached and not result.failures and not result.missing
        assert fields_of(result.readings) == {
            "energy.voltage_v": 230.5,
            "energy.current_a": 12.25,
            "energy.power_w": 2750.0,
            "energy.register": pytest.approx(12345.6),
            "door.open": True,
            "door.locked": False,
            "light.level": 40.0,
        }
        energy = next(r for r in result.readings if r.measurement is schema.ENERGY)
        assert energy.tags == {"carrier": "electricity"}
        light = next(r for r in result.readings if r.measurement is schema.LIGHT)
        assert light.tags == {"zone": "hall"}

    run_against_simulator(scenario)


def test_exception_code_2_costs_only_the_block_it_covers() -> None:
    async def scenario(server: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        server.units[1].fail(Table.INPUT, 0, 13, code=2)
        result = await devices[0].poll(["default", "energy"])
        assert result.reached
        assert len(result.failures) == 1
        assert "exception 2 (illegal data address)" in result.failures[0]
        assert set(result.missing) == {"voltage", "current", "power"}
        got = fields_of(result.readings)
        assert got["energy.register"] == pytest.approx(12345.6)
        assert got["door.open"] is True
        assert got["light.level"] == 40.0
        assert "energy.voltage_v" not in got

    run_against_simulator(scenario)


def test_sentinel_is_missing_with_reason_not_a_number() -> None:
    async def scenario(server: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        server.units[1].set_raw("energy", [0xFFFF, 0xFFFF])
        result = await devices[0].poll(["energy"])
        assert "sentinel" in result.missing["energy"]
        assert "energy.register" not in fields_of(result.readings)

    run_against_simulator(scenario)


def test_silent_device_goes_unavailable_once_and_recovers_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="openbranch.edge.runtime.coordinator")
    emitted: list[Any] = []

    async def scenario(server: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        coordinator = Coordinator(source=devices[0], clock=SystemClock(), emit=emitted.extend)
        await coordinator.poll_once()
        assert coordinator.available is True
        server.units[1].set_silent(True)
        for _ in range(3):
            result = await coordinator.poll_once()
            assert not result.reached
        assert coordinator.available is False
        assert coordinator.stats.downs == 1
        assert coordinator.retry_delay() == 4.0  # 1 s interval doubled per failure
        before = len(emitted)
        server.units[1].set_silent(False)
        await coordinator.poll_once()
        assert coordinator.available is True
        assert len(emitted) > before

    run_against_simulator(scenario)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1, messages
    assert sum("recovered" in m for m in messages) == 1, messages


def test_refused_connection_is_unreachable() -> None:
    async def main() -> None:
        config = device_config(free_port())
        bus = Bus(config.transport)  # type: ignore[arg-type]
        device = ModbusDevice(
            config=config, profile=profile(), bus=bus, branch="t", clock=SystemClock()
        )
        result = await Coordinator(source=device, clock=SystemClock(), emit=list).poll_once()
        assert not result.reached
        assert "cannot connect" in result.failures[0]

    asyncio.run(main())


def test_write_is_read_back_and_out_of_range_never_sent() -> None:
    now = datetime.now(UTC)

    def command(point: str, value: Any, expires: timedelta = timedelta(minutes=1)) -> Command:
        return Command(
            device="meter-1",
            point=point,
            value=value,
            reason="test",
            who="pytest",
            issued_at=now,
            expires_at=now + expires,
        )

    async def scenario(server: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        sim = server.units[1]
        assert await devices[0].write(command("level", 75.0)) == 75.0
        assert sim.get("level") == 75.0
        assert await devices[0].write(command("lock_relay", True)) is True
        assert sim.get("lock_relay") is True
        writes = len(sim.writes)
        with pytest.raises(CommandError, match=r"120 is not in 0\.\.100"):
            await devices[0].write(command("level", 120))
        with pytest.raises(CommandError, match="not writable"):
            await devices[0].write(command("power", 1.0))
        assert len(sim.writes) == writes

    run_against_simulator(scenario)


def test_expired_command_is_not_carried_out() -> None:
    past = datetime.now(UTC) - timedelta(hours=1)

    async def scenario(server: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        stale = Command(
            device="meter-1",
            point="level",
            value=10.0,
            reason="late",
            who="pytest",
            issued_at=past,
            expires_at=past + timedelta(minutes=5),
        )
        with pytest.raises(CommandError, match="expired"):
            await devices[0].write(stale)
        assert server.units[1].writes == []

    run_against_simulator(scenario)


def test_units_sharing_a_tcp_gateway_are_served_in_turn() -> None:
    async def scenario(server: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        server.units[2].set("power", 999.0)
        results = await asyncio.gather(*(d.poll(["default"]) for d in devices))
        powers = [fields_of(r.readings)["energy.power_w"] for r in results]
        assert powers == [2750.0, 999.0, 2750.0]
        assert all(server.units[u].requests == 3 for u in (1, 2, 3))

    run_against_simulator(scenario, units=3)


def test_one_request_per_point_escape_hatch() -> None:
    async def scenario(server: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        (device,) = devices
        assert len(device.requests()) == 7  # every readable point on its own
        await device.poll(["default", "energy"])
        assert server.units[1].requests == 7

    run_against_simulator(scenario, one_request_per_point=True)


def test_coordinator_runs_groups_on_their_intervals() -> None:
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    clock = ScaledClock(start=start, speed=20)
    emitted: list[Any] = []

    async def scenario(server: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        coordinator = Coordinator(source=devices[0], clock=clock, emit=emitted.extend)
        task = asyncio.create_task(coordinator.run())
        await asyncio.sleep(1.05)  # ~21 s of device time: default every 1 s, energy every 5 s
        task.cancel()
        energy = [r for r in emitted if "register" in r.fields]
        power = [r for r in emitted if "power_w" in r.fields]
        assert 4 <= len(energy) <= 6, len(energy)
        assert 15 <= len(power) <= 23, len(power)

    run_against_simulator(scenario, clock=clock)


def test_rtu_frames_over_tcp() -> None:
    async def scenario(server: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        assert server.rtu_framing
        result = await devices[0].poll(["default", "energy"])
        assert not result.failures
        assert fields_of(result.readings)["energy.power_w"] == 2750.0

    run_against_simulator(scenario, type="modbus_rtu_over_tcp")


def test_pause_between_requests_paces_the_bus() -> None:
    async def scenario(_: ModbusSimulator, devices: list[ModbusDevice]) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await devices[0].poll(["default", "energy"])  # 4 requests, 3 pauses
        assert loop.time() - t0 >= 0.3

    run_against_simulator(scenario, pause_between_requests=0.1)
