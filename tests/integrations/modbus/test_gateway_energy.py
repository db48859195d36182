"""A running gateway polls a simulated meter whose uint16 energy register wraps: the profile's
register type and scale tell the ledger the rollover, and the wrap counts as consumption."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import DeviceConfig, GatewayConfig, MqttConfig
from openbranch.edge.core.registry import BuildContext, Registry
from openbranch.edge.core.yamlsource import parse_yaml, validate
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.integrations.modbus.device import ModbusDevice
from openbranch.integrations.modbus.profile import ModbusProfile
from openbranch.integrations.modbus.simulator import Simulation
from openbranch.integrations.modbus.transport import Bus
from tests.services import free_port

PROFILE = validate(
    ModbusProfile,
    parse_yaml(
        """\
id: wrapping-meter
manufacturer: OpenBranch
model: A meter whose energy register is a uint16 of 0.01 kWh (it wraps after 655.35 kWh)
datasheet: a register map made for this test
tags: {carrier: electricity}
points:
  - {id: energy, table: input, address: 10, type: uint16, scale: 0.01, measurement: energy, field: register, unit: kWh, group: energy}
""",
        name="wrapping-meter.yaml",
    ),
)
START = datetime(2026, 11, 24, 12, 56, tzinfo=UTC)
# (branch time from which the meter shows it, register): the wrap comes at 12:58
SCRIPT = [(0, 650.00), (1, 655.00), (2, 1.64), (3, 2.00)]  # minutes after START, kWh
# 12:00 hour (from the first reading, 12:56), the rollover being 2**16 * 0.01 = 655.36 kWh:
# 5.00 + (655.36 - 655.00 + 1.64) + 0.36 kWh
CONSUMED = 5.00 + 2.00 + 0.36


class WrappingMeterDriver:
    """The Modbus driver, serving this test's profile instead of the catalogue's."""

    name = "modbus"
    transports = frozenset({"modbus_tcp"})

    def check(self, device: DeviceConfig) -> None:
        pass

    def build(self, device: DeviceConfig, context: BuildContext) -> ModbusDevice:
        return ModbusDevice(
            config=device,
            profile=PROFILE,
            bus=Bus(device.transport),  # type: ignore[arg-type]
            branch=context.branch,
            clock=context.clock,
        )

    def simulate(
        self, devices: Sequence[DeviceConfig], *, mqtt: MqttConfig | None = None
    ) -> Simulation:
        return Simulation(devices, {PROFILE.id: PROFILE})


def field(line: str, key: str) -> float:
    found = re.search(rf"[ ,]{key}=([-0-9.e+]+)", line)
    assert found, f"no {key} in {line}"
    return float(found.group(1))


def test_a_wrap_of_the_meters_uint16_register_is_consumption_through_the_gateway(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "wrap", "name": "Wrapping meter branch"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "devices": [
                {
                    "id": "meter",
                    "profile": PROFILE.id,
                    "transport": {
                        "type": "modbus_tcp",
                        "host": "127.0.0.1",
                        "port": free_port(),
                        "unit_id": 1,
                        "timeout": 0.5,
                    },
                    "poll": {"energy": "10s"},
                }
            ],
        }
    )
    registry = Registry()
    registry.add(WrappingMeterDriver())
    clock = ScaledClock(start=START, speed=60)  # a branch minute per real second
    outbox = open_outbox(config)
    gateway = Gateway(config=config, registry=registry, clock=clock, outbox=outbox, extensions=[])
    (simulation,) = registry.simulate(config.devices)
    meter = simulation.devices["meter"]
    hourly = schema.ENERGY_HOURLY.name

    async def main() -> None:
        meter.set("energy", SCRIPT[0][1])
        await simulation.start()
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        deadline = START + timedelta(minutes=10)
        try:
            while not any(outbox.lines(measurement=hourly)):  # the 12:00 hour closed
                now = clock.now()
                assert now < deadline, "the 12:00 hour never closed"
                for minute, register in SCRIPT:
                    if now >= START + timedelta(minutes=minute):
                        shown = register
                meter.set("energy", shown)
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
            await simulation.stop()

    with caplog.at_level(logging.INFO, logger="openbranch.edge.telemetry.energy"):
        asyncio.run(main())
    energy = [e.line for e in outbox.lines(measurement=schema.ENERGY.name, device="meter")]
    hours = [e.line for e in outbox.lines(measurement=hourly, device="meter")]
    outbox.close()

    registers = [field(line, schema.ENERGY_REGISTER.key) for line in energy]
    shown = [r for i, r in enumerate(registers) if i == 0 or r != registers[i - 1]]
    assert shown == [pytest.approx(r) for _, r in SCRIPT]  # read before, across, after the wrap
    totals = [field(line, schema.ENERGY_TOTAL.key) for line in energy]
    assert totals == sorted(totals)  # monotonic through the wrap
    assert totals[-1] == pytest.approx(650.00 + CONSUMED)  # not 650 + 7.00 (a reset)
    assert "meter: counter wrapped to 1.64" in caplog.text
    assert "a reset or a new meter" not in caplog.text
    assert field(hours[0], schema.HOURLY_CONSUMPTION.key) == pytest.approx(CONSUMED)
    assert hours[0].endswith(f" {int(START.replace(minute=0).timestamp()) * 10**9}")
