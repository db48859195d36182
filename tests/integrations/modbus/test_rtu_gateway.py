"""A running gateway with two RTU devices on one simulated RS-485 line (the Modbus driver's own
simulation of the config, the catalogue's profiles): the line's port is unplugged and plugged
back in; the gateway recovers without a restart and says what happened: the devices' alerts,
their availability in the store (what `gateway status` prints) and the log."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.clock import SystemClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import Registry
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.integrations.modbus import ModbusDriver
from openbranch.integrations.modbus.simulator import Simulation
from tests.support.waiting import until


def test_the_gateway_rides_out_an_unplugged_serial_port(
    socat: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = tmp_path / "ttyUSB0"
    line = {"type": "modbus_rtu", "serial_port": str(port), "baudrate": 19200}
    line |= {"parity": "N", "stopbits": 2, "timeout": 0.2}
    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "rtu", "name": "RS-485 branch"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "devices": [
                {
                    "id": "main-meter",
                    "profile": "eastron-sdm630",
                    "transport": {**line, "unit_id": 1},
                    "poll": {"default": 0.2, "energy": 0.2},
                },
                {
                    "id": "reading-room",
                    "profile": "vaisala-gmw90",
                    "transport": {**line, "unit_id": 12},
                    "poll": {"default": 0.2},
                },
            ],
        }
    )
    registry = Registry()
    registry.add(ModbusDriver())
    outbox = open_outbox(config)
    gateway = Gateway(
        config=config, registry=registry, clock=SystemClock(), outbox=outbox, extensions=[]
    )
    (simulation,) = registry.simulate(config.devices)
    assert isinstance(simulation, Simulation)
    serial_line = simulation.lines[str(port)]
    simulation.devices["reading-room"].set("co2", 700)
    coordinators = {c.device_id: c for c in gateway.coordinators}
    kinds = [f"{schema.DEVICE_DOWN}:{d}" for d in coordinators]

    def state(device: str) -> bool:
        raw = outbox.get_state(f"availability:{device}")
        return raw is not None and bool(json.loads(raw)["available"])

    async def main() -> None:
        await simulation.start()
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await until(lambda: all(c.available for c in coordinators.values()), what="up")
            await serial_line.unplug()
            await until(lambda: all(k in gateway.journal.active for k in kinds), what="both alerts")
            assert not any(c.available for c in coordinators.values())
            await until(lambda: not state("main-meter") and not state("reading-room"))
            assert "unplugged?" in coordinators["main-meter"].stats.last_failure
            await serial_line.plug()
            await until(
                lambda: all(c.available for c in coordinators.values()),
                within=8,
                what="both devices back",
            )
            await until(lambda: not any(k in gateway.journal.active for k in kinds))
            await until(lambda: state("main-meter") and state("reading-room"))
            polls = coordinators["reading-room"].stats.readings
            await until(lambda: coordinators["reading-room"].stats.readings > polls + 2)
            assert coordinators["reading-room"].last[("indoor", "co2_ppm")][0] == 700
        finally:
            stop.set()
            await task
            await simulation.stop()

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    outbox.close()
    messages = [r.getMessage() for r in caplog.records]
    for device in coordinators:
        assert sum(f"{device}: unavailable" in m for m in messages) == 1, messages
        assert sum(f"{device}: recovered" in m for m in messages) == 1, messages
        assert sum(f"device_down:{device} raised" in m for m in messages) == 1, messages
        assert sum(f"device_down:{device} cleared" in m for m in messages) == 1, messages
    assert sum("connection lost" in m for m in messages) == 1, messages
    assert sum("open again after" in m for m in messages) == 1, messages
