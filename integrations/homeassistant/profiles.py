"""The profile of a configured device, from the catalogue of the protocol that serves it."""

from __future__ import annotations

from typing import Any

from openbranch.edge.core.config import DeviceConfig, MqttTransport
from openbranch.integrations.modbus.profile import CATALOGUE as MODBUS
from openbranch.integrations.mqtt.profile import CATALOGUE as MQTT
from openbranch.integrations.profile import Profile

__all__ = ["profile_for"]


def profile_for(device: DeviceConfig) -> Profile[Any]:
    """ProfileError (a ValueError) when the profile is unknown."""
    catalogue = MQTT if isinstance(device.transport, MqttTransport) else MODBUS
    return catalogue.get(device.profile)
