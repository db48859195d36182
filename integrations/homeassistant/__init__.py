"""Home Assistant MQTT discovery: every device of the branch, the branch mode and the
gateway's health appear in Home Assistant by themselves (see README.md)."""

from __future__ import annotations

from edge.gateway import ExtensionContext
from integrations.homeassistant.discovery import (
    DiscoveryError,
    Entity,
    alert_entity,
    discovery,
    entities,
    node_id,
)
from integrations.homeassistant.publisher import HomeAssistantDiscovery

__all__ = [
    "DiscoveryError",
    "Entity",
    "HomeAssistantDiscovery",
    "alert_entity",
    "discovery",
    "entities",
    "extension",
    "node_id",
]


def extension(context: ExtensionContext) -> HomeAssistantDiscovery | None:
    """The ``openbranch.extensions`` entry point: on when the gateway has MQTT and
    ``homeassistant.enabled`` (the default)."""
    if context.mqtt is None or not context.config.homeassistant.enabled:
        return None
    return HomeAssistantDiscovery(config=context.config, session=context.mqtt)
