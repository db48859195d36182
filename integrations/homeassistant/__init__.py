"""Home Assistant MQTT discovery: every device of the branch, the branch mode and the
gateway's health appear in Home Assistant by themselves (see README.md)."""

from __future__ import annotations

import logging

from openbranch.edge.core.registry import ExtensionContext
from openbranch.integrations.homeassistant.discovery import (
    DiscoveryError,
    Entity,
    alert_entity,
    discovery,
    entities,
    node_id,
)
from openbranch.integrations.homeassistant.publisher import HomeAssistantDiscovery

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

log = logging.getLogger(__name__)


def extension(context: ExtensionContext) -> HomeAssistantDiscovery | None:
    """The ``openbranch.extensions`` entry point: on when the gateway has MQTT and
    ``homeassistant.enabled`` (the default). Entities that would clash leave Home Assistant
    without discovery, logged, rather than the branch without its gateway."""
    if context.mqtt is None or not context.config.homeassistant.enabled:
        return None
    try:
        found = HomeAssistantDiscovery(config=context.config, session=context.mqtt)
    except DiscoveryError as exc:
        log.error("Home Assistant discovery is off: %s", exc)
        return None
    context.on_alert(found.on_alert)
    return found
