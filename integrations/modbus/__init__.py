"""Modbus TCP, RTU and RTU-over-TCP devices, described by profiles (see README.md)."""

from __future__ import annotations

from collections.abc import Sequence

from openbranch.edge.core.config import (
    DeviceConfig,
    ModbusRtu,
    ModbusRtuOverTcp,
    ModbusTcp,
    MqttConfig,
)
from openbranch.edge.core.registry import BuildContext, Registry
from openbranch.integrations.modbus.device import ModbusDevice
from openbranch.integrations.modbus.profile import CATALOGUE, ModbusProfile
from openbranch.integrations.modbus.simulator import Simulation
from openbranch.integrations.modbus.transport import BusPool

__all__ = ["CATALOGUE", "ModbusDevice", "ModbusDriver", "ModbusProfile", "register"]


class ModbusDriver:
    name = "modbus"
    transports = frozenset({"modbus_tcp", "modbus_rtu", "modbus_rtu_over_tcp"})

    def check(self, device: DeviceConfig) -> None:
        profile = CATALOGUE.get(device.profile)
        unknown = set(device.poll) - profile.groups - {"default"}
        if unknown:
            raise ValueError(
                f"poll groups {sorted(unknown)} are not in profile {profile.id}"
                f" (it has: {', '.join(sorted(profile.groups))})"
            )

    def build(self, device: DeviceConfig, context: BuildContext) -> ModbusDevice:
        transport = device.transport
        if not isinstance(transport, ModbusTcp | ModbusRtuOverTcp | ModbusRtu):
            raise TypeError(f"{device.id}: {transport.type} is not a Modbus transport")
        pool = context.shared.setdefault("modbus.buses", BusPool())
        return ModbusDevice(
            config=device,
            profile=CATALOGUE.get(device.profile),
            bus=pool.get(transport),
            branch=context.branch,
            clock=context.clock,
        )

    def simulate(
        self, devices: Sequence[DeviceConfig], *, mqtt: MqttConfig | None = None
    ) -> Simulation:
        return Simulation(devices, {d.profile: CATALOGUE.get(d.profile) for d in devices})


def register(registry: Registry) -> None:
    registry.add(ModbusDriver())
