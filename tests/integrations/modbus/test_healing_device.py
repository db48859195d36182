"""The plan heals: a device that refuses part of a coalesced read (exception 2 or 3, or a
shorter block than asked) against real Modbus servers built from a profile; the rest is read
at once, the plan is made again around what it refuses, and tried again after a day."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openbranch.edge.core.config import DeviceConfig
from openbranch.edge.core.yamlsource import parse_yaml, validate
from openbranch.integrations.modbus.device import ModbusDevice
from openbranch.integrations.modbus.profile import ModbusProfile
from openbranch.integrations.modbus.register import Table
from openbranch.integrations.modbus.simulator import ModbusSimulator, SimulatedUnit
from openbranch.integrations.modbus.transport import Bus
from tests.integrations.modbus.rs485 import fields_of, on_a_line, rtu_device
from tests.services import free_port

PHASES = ("l1", "l2", "l3")
PROFILE = """\
id: eight-floats
manufacturer: OpenBranch
model: a meter of eight float32 values in input registers 0-15
datasheet: a register map made for these tests
tags: {carrier: electricity}
points:
"""
PROFILE += "".join(
    f"  - {{id: {name}_{phase}, table: input, address: {address}, type: float32,"
    f" measurement: electrical, field: {field}, unit: {unit}, tags: {{phase: {phase}}}}}\n"
    for address, (name, field, unit, phase) in zip(
        range(0, 16, 2),
        [("voltage", "voltage_v", "V", p) for p in PHASES]
        + [("current", "current_a", "A", p) for p in PHASES]
        + [("power", "power_w", "W", p) for p in ("l1", "l2")],
        strict=True,
    )
)
KEYS = [f"voltage_{p}" for p in PHASES] + [f"current_{p}" for p in PHASES]
KEYS += ["power_l1", "power_l2"]
START = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


class ManualClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return START + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds

    async def sleep(self, seconds: float) -> None:
        self.seconds += seconds
        await asyncio.sleep(0)


def eight_floats(extra: str = "") -> ModbusProfile:
    return validate(ModbusProfile, parse_yaml(extra + PROFILE, name="eight-floats.yaml"))


Scenario = Callable[[SimulatedUnit, ModbusDevice, ManualClock], Awaitable[None]]


def against_a_meter(scenario: Scenario, *, device_profile: ModbusProfile | None = None) -> None:
    """One simulated meter (its own profile) polled through a device built from
    ``device_profile`` (by default the same)."""

    async def main() -> None:
        port = free_port()
        profile = eight_floats()
        unit = SimulatedUnit(device_id="meter", profile=device_profile or profile, unit_id=1)
        for i, key in enumerate(KEYS):
            unit.set(key, 100.0 + i)
        server = ModbusSimulator(host="127.0.0.1", port=port, units=[unit])
        await server.start()
        config = DeviceConfig.model_validate(
            {
                "id": "meter",
                "profile": "eight-floats",
                "transport": {"type": "modbus_tcp", "host": "127.0.0.1", "port": port},
            }
        )
        clock = ManualClock()
        bus = Bus(config.transport)  # type: ignore[arg-type]
        device = ModbusDevice(
            config=config,
            profile=profile,
            bus=bus,
            branch="test",
            clock=clock,
            reprobe_after=24 * 3600,
        )
        try:
            await scenario(unit, device, clock)
        finally:
            await bus.close()
            await server.stop()

    asyncio.run(main())


def spans(device: ModbusDevice) -> list[tuple[int, int]]:
    return [(r.address, r.count) for r in device.requests()]


def test_a_refused_register_in_a_coalesced_read_is_found_and_planned_around(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="openbranch.integrations.modbus.device")

    async def scenario(unit: SimulatedUnit, device: ModbusDevice, _: ManualClock) -> None:
        assert spans(device) == [(0, 16)]
        unit.fail(Table.INPUT, 9, 9, code=2)  # a register of current_l2 (8-9)
        result = await device.poll(["default"])
        assert result.reached
        assert unit.requests == 1 + 6  # the refused read, then the halves down to current_l2
        got = fields_of(result.readings)
        assert len(got) == 7 and "electrical.current_a[l2]" not in got  # the rest, at once
        assert got["electrical.power_w[l2]"] == 107.0
        assert set(result.missing) == {"current_l2"}
        reason = result.missing["current_l2"]
        assert reason == (
            "refused by the device (exception 2 (illegal data address));"
            " read again after 2026-12-05 08:00 UTC"
        )
        (failure,) = result.failures
        assert failure.endswith(
            "input 0+16: exception 2 (illegal data address); split in 6 reads,"
            " refused: current_l2; default planned again: 1 -> 2 requests"
        )
        assert spans(device) == [(0, 8), (10, 6)]
        assert device.describe_plan().endswith("(default every 10 s; refused: current_l2)")
        before = unit.requests
        result = await device.poll(["default"])
        assert unit.requests == before + 2 and not result.failures  # the new plan holds
        assert result.missing == {"current_l2": reason}
        assert len(fields_of(result.readings)) == 7

    against_a_meter(scenario)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "refused: current_l2" in warnings[0], warnings
    assert "the configured plan is tried again in 1 day, 0:00:00" in warnings[0]


def test_a_read_longer_than_the_device_answers_is_cut_without_losing_a_point() -> None:
    """The profile says nothing, but this device answers at most 8 registers (exception 3)."""

    async def scenario(unit: SimulatedUnit, device: ModbusDevice, _: ManualClock) -> None:
        result = await device.poll(["default"])
        assert result.reached and not result.missing
        assert len(fields_of(result.readings)) == 8
        assert "exception 3 (illegal data value); split in 2 reads" in result.failures[0]
        assert "reads no longer span input 7/8" in result.failures[0]
        assert spans(device) == [(0, 8), (8, 8)]
        assert (await device.poll(["default"])).failures == ()

    against_a_meter(scenario, device_profile=eight_floats("max_registers: 8\n"))


def test_a_shorter_block_than_asked_is_healed_like_a_refusal() -> None:
    async def scenario(unit: SimulatedUnit, device: ModbusDevice, _: ManualClock) -> None:
        unit.shorten(Table.INPUT, 12, 15)  # answers reads up to register 11 only
        result = await device.poll(["default"])
        assert result.reached
        assert "input 0+16: answered only 12" in result.failures[0]
        assert set(result.missing) == {"power_l1", "power_l2"}
        assert "the device answers a shorter block than asked" in result.missing["power_l1"]
        assert spans(device) == [(0, 12)]
        assert len(fields_of((await device.poll(["default"])).readings)) == 6

    against_a_meter(scenario)


def test_refused_points_are_tried_again_a_day_later() -> None:
    async def scenario(unit: SimulatedUnit, device: ModbusDevice, clock: ManualClock) -> None:
        unit.fail(Table.INPUT, 8, 9, code=2)
        await device.poll(["default"])
        assert spans(device) == [(0, 8), (10, 6)]
        clock.seconds += 23 * 3600
        unit.clear_failures()  # new firmware: current_l2 reads now
        assert "current_l2" in (await device.poll(["default"])).missing  # not tried yet
        clock.seconds += 3600
        requests = unit.requests
        result = await device.poll(["default"])
        assert unit.requests == requests + 1  # the configured plan, at once
        assert not result.missing and not result.failures and not device.refused()
        assert spans(device) == [(0, 16)]
        unit.fail(Table.INPUT, 8, 9, code=2)  # refused again: found again, tried again later
        await device.poll(["default"])
        clock.seconds += 24 * 3600 - 1
        assert "current_l2" in (await device.poll(["default"])).missing
        assert device.refused() == {"current_l2": "exception 2 (illegal data address)"}

    against_a_meter(scenario)


def test_another_exception_is_not_healed() -> None:
    """Exception 4 (server device failure) is the device's trouble now, not its register map:
    the read costs its points this time and the plan stays."""

    async def scenario(unit: SimulatedUnit, device: ModbusDevice, _: ManualClock) -> None:
        unit.fail(Table.INPUT, 8, 9, code=4)
        result = await device.poll(["default"])
        assert set(result.missing) == set(KEYS) and unit.requests == 1
        assert spans(device) == [(0, 16)] and not device.refused()

    against_a_meter(scenario)


def test_healing_on_a_9600_baud_line_costs_few_requests(socat: str, tmp_path: Path) -> None:
    """An SDM630 whose firmware refuses the three power factors (input 30-35), on a line."""
    port = tmp_path / "ttyRS485"

    async def main() -> None:
        async with on_a_line(port, [rtu_device("meter", "eastron-sdm630", port, 1)]) as line:
            line.units["meter"].fail(Table.INPUT, 30, 35, code=2)
            line.units["meter"].set("frequency", 50.0)
            device = line.devices["meter"]
            result = await device.poll(["default", "energy"])
            refused = {f"power_factor_{p}" for p in PHASES}
            assert set(result.missing) == refused
            assert fields_of(result.readings)["electrical.frequency_hz"] == 50.0
            first = len(line.gateway_frames())
            assert "split in 10 reads" in result.failures[0]
            assert first == 2 + 10  # the plan, and 10 reads for 3 refused points among 19
            result = await device.poll(["default", "energy"])
            assert set(result.missing) == refused and not result.failures
            assert len(line.gateway_frames()) - first == len(device.requests()) == 3

    asyncio.run(main())
