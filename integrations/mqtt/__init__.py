"""MQTT devices that push JSON (Zigbee2MQTT, people counters), described by profiles."""

from __future__ import annotations

from collections.abc import Sequence

from openbranch.edge.core.config import DeviceConfig, MqttConfig
from openbranch.edge.core.registry import BuildContext, Registry
from openbranch.integrations.mqtt.device import MqttDevice
from openbranch.integrations.mqtt.profile import CATALOGUE, MqttProfile
from openbranch.integrations.mqtt.reader import MqttReader
from openbranch.integrations.mqtt.simulator import MqttSimulation

__all__ = ["CATALOGUE", "MqttDevice", "MqttDriver", "MqttProfile", "MqttReader", "register"]


class MqttDriver:
    name = "mqtt"
    transports = frozenset({"mqtt"})

    def check(self, device: DeviceConfig) -> None:
        CATALOGUE.get(device.profile)

    def build(self, device: DeviceConfig, context: BuildContext) -> MqttDevice:
        profile = CATALOGUE.get(device.profile)
        kind = MqttDevice if profile.reader is None else MqttReader
        return kind(
            config=device,
            profile=profile,
            session=context.mqtt,
            branch=context.branch,
            clock=context.clock,
        )

    def simulate(
        self, devices: Sequence[DeviceConfig], *, mqtt: MqttConfig | None = None
    ) -> MqttSimulation:
        return MqttSimulation(devices, {d.profile: CATALOGUE.get(d.profile) for d in devices}, mqtt)


def register(registry: Registry) -> None:
    registry.add(MqttDriver())
