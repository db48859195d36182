"""A simulated RS-485 line with units built from profiles, and devices polling it over it.

``on_a_line`` starts the line (two socat processes and the paced wire between them), a pymodbus
serial server for the units at its far end, and a ``ModbusDevice`` per unit sharing one
``Bus``, as the gateway builds them; it stops everything afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openbranch.edge.core.clock import Clock, SystemClock
from openbranch.edge.core.config import DeviceConfig
from openbranch.edge.core.reading import Reading
from openbranch.integrations.modbus.device import ModbusDevice
from openbranch.integrations.modbus.profile import CATALOGUE, ModbusProfile
from openbranch.integrations.modbus.serialline import Frame, Sender, SerialLine
from openbranch.integrations.modbus.simulator import ModbusRtuSimulator, SimulatedUnit
from openbranch.integrations.modbus.transport import Bus, BusPool


def rtu_device(
    device_id: str, profile: str, port: Path, unit: int, *, baudrate: int = 9600, **options: Any
) -> DeviceConfig:
    """A device on the line: 8N2 (a pty carries no parity; 11 bits like 8E1)."""
    return DeviceConfig.model_validate(
        {
            "id": device_id,
            "profile": profile,
            "transport": {
                "type": "modbus_rtu",
                "serial_port": str(port),
                "baudrate": baudrate,
                "parity": "N",
                "stopbits": 2,
                "unit_id": unit,
                "timeout": 0.3,
                **options,
            },
            "poll": {"default": 0.2},
        }
    )


@dataclass
class Line:
    line: SerialLine
    units: Mapping[str, SimulatedUnit]
    devices: Mapping[str, ModbusDevice]
    bus: Bus

    def gateway_frames(self, unit: int | None = None) -> list[Frame]:
        return [
            f
            for f in self.line.frames
            if f.sender is Sender.GATEWAY and (unit is None or f.data[0] == unit)
        ]


@contextlib.asynccontextmanager
async def on_a_line(
    port: Path,
    devices: Sequence[DeviceConfig],
    *,
    profiles: Mapping[str, ModbusProfile] | None = None,
    clock: Clock | None = None,
    reprobe_after: float = 24 * 3600.0,
) -> AsyncIterator[Line]:
    first = devices[0].transport
    assert first.type == "modbus_rtu"
    line = SerialLine(
        port=port, baudrate=first.baudrate, parity=first.parity, stopbits=first.stopbits
    )
    profiles = profiles or {}
    units = {}
    for d in devices:
        assert d.transport.type == "modbus_rtu"
        profile = profiles.get(d.profile) or CATALOGUE.get(d.profile)
        units[d.id] = SimulatedUnit(device_id=d.id, profile=profile, unit_id=d.transport.unit_id)
    server = ModbusRtuSimulator(line=line, units=list(units.values()))
    await server.start()
    pool = BusPool()
    built = {
        d.id: ModbusDevice(
            config=d,
            profile=units[d.id].profile,
            bus=pool.get(d.transport),  # type: ignore[arg-type]
            branch="test",
            clock=clock or SystemClock(),
            reprobe_after=reprobe_after,
        )
        for d in devices
    }
    try:
        yield Line(line=line, units=units, devices=built, bus=pool.get(first))
    finally:
        await pool.close()
        await server.stop()


def fields_of(readings: Sequence[Reading]) -> dict[str, Any]:
    """measurement.field (with the tags that tell points apart) -> value."""
    out: dict[str, Any] = {}
    for r in readings:
        tag = "".join(f"[{v}]" for k, v in sorted(r.tags.items()) if k in ("phase", "zone"))
        out.update({f"{r.measurement.name}.{k}{tag}": v for k, v in r.fields.items()})
    return out
