"""The gateway extension that keeps Home Assistant's discovery configs right.

After the gateway's MQTT session connects it listens for ``COLLECT_WINDOW`` seconds to the
retained discovery configs under this gateway's node (what an earlier run published), then
empties the retained config of every entity that is no longer in the gateway config (a removed
device, a changed profile), and publishes every current config, retained. It publishes them
all again whenever Home Assistant announces itself (``{discovery_prefix}/status`` ``online``).

Alerts: the gateway's alert kinds are only known when raised, so each kind the gateway raises
(it tells the extension itself, never through MQTT: a spoofed state message must not create
entities) gets its binary sensor then, up to ``MAX_ALERT_ENTITIES``; alert entities are kept
across restarts (an earlier run's alert entity is not stale), except the ``device_down``
alert of a device taken out of the config.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.messaging import MqttLink
from openbranch.edge.core.schema import DEVICE_DOWN
from openbranch.integrations.homeassistant.discovery import (
    alert_entity,
    discovery,
    is_alert_topic,
    node_id,
)

__all__ = ["COLLECT_WINDOW", "MAX_ALERT_ENTITIES", "HomeAssistantDiscovery"]

log = logging.getLogger(__name__)

MAX_ALERT_ENTITIES = 500  # alert kinds with an entity; more are logged, not published
COLLECT_WINDOW = 1.5  # seconds after connecting in which earlier retained configs arrive
ONLINE = b"online"


class HomeAssistantDiscovery:
    """Publishes discovery for one gateway on its MQTT session (see the module docstring)."""

    name = "homeassistant"

    def __init__(
        self,
        *,
        config: GatewayConfig,
        session: MqttLink,
        collect_window: float = COLLECT_WINDOW,
    ) -> None:
        self._config = config
        self._session = session
        self._window = collect_window
        self.prefix = config.homeassistant.discovery_prefix
        self.messages = discovery(config)
        self.alerts: dict[str, bytes] = {}
        self.seen: set[str] = set()
        self.removed: list[str] = []
        self.ready = asyncio.Event()
        self._collecting = True
        session.subscribe(f"{self.prefix}/status", self._on_home_assistant)
        session.subscribe(f"{self.prefix}/+/{node_id(config.branch.id)}/+/config", self._on_config)

    async def run(self) -> None:
        while not self._session.connected:  # noqa: ASYNC110 - the session has no public event
            await asyncio.sleep(0.05)
        await asyncio.sleep(self._window)
        self._collecting = False
        current = set(self.messages) | set(self.alerts)
        self.removed = sorted(t for t in self.seen - current if self._stale(t))
        for topic in self.removed:
            self._session.publish(topic, b"", retain=True)
        self.publish_all()
        log.info(
            "Home Assistant discovery: %d entities under %s/, %d removed",
            len(self.messages) + len(self.alerts),
            self.prefix,
            len(self.removed),
        )
        self.ready.set()
        await asyncio.Event().wait()  # the handlers do the rest until the gateway stops

    def _stale(self, topic: str) -> bool:
        """Not in this run's discovery: stale, unless it is an alert entity of an earlier run
        (alert kinds appear only when raised), and then only if it is not the device_down
        alert of a device no longer in the config."""
        if not is_alert_topic(topic, self._config.branch.id):
            return True
        probe = alert_entity(self._config, f"{DEVICE_DOWN}:x", discovery_prefix=self.prefix)
        node, object_id, _config = probe.topic.rsplit("/", 2)  # object id ends "..._x"
        if not topic.startswith(f"{node}/{object_id[:-1]}"):
            return False
        kept = {
            alert_entity(self._config, f"{DEVICE_DOWN}:{d.id}", discovery_prefix=self.prefix).topic
            for d in self._config.devices
        }
        return topic not in kept

    def publish_all(self) -> None:
        self._publish({**self.messages, **self.alerts}.items())

    def _publish(self, messages: Iterable[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            self._session.publish(topic, payload, retain=True)

    def _on_home_assistant(self, _topic: str, payload: bytes, _retained: bool) -> None:
        if payload.strip() == ONLINE and not self._collecting:
            log.info("Home Assistant came online: discovery published again")
            self.publish_all()

    def _on_config(self, topic: str, payload: bytes, _retained: bool) -> None:
        if self._collecting and payload:
            self.seen.add(topic)

    def on_alert(self, kind: str) -> None:
        """The gateway raised an alert of ``kind``: its entity, if it has none yet."""
        entity = alert_entity(self._config, kind, discovery_prefix=self.prefix)
        if entity.topic in self.alerts:
            return
        if len(self.alerts) >= MAX_ALERT_ENTITIES:
            log.warning(
                "Home Assistant: no entity for alert %s: %d alert entities", kind, len(self.alerts)
            )
            return
        self.alerts[entity.topic] = entity.encode()
        if not self._collecting:
            self._publish([(entity.topic, self.alerts[entity.topic])])
