"""The gateway's MQTT session: availability, retained state, and subscriptions for devices.

Topic layout (prefix = ``mqtt.topic_prefix``, default ``openbranch``):

    {prefix}/{branch}/status                      retained "online" / "offline" (last will)
    {prefix}/{branch}/{device}/state              retained JSON: the device's last values
    {prefix}/{branch}/{device}/availability       retained "online" / "offline"

MQTT v5 is used when the broker offers it (3.1.1 otherwise). The session reconnects by itself,
publishes the birth message after every connect and re-subscribes. Handlers run on the asyncio
loop that connected, never on paho's network thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttConfig

__all__ = ["Handler", "MqttError", "MqttSession", "Topics", "publish_once"]

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes, bool], None]  # topic, payload, retained


class MqttError(ConnectionError):
    """The broker could not be reached or refused the session."""


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    branch: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.branch}/status"

    def state(self, device: str) -> str:
        return f"{self.prefix}/{self.branch}/{device}/state"

    def availability(self, device: str) -> str:
        return f"{self.prefix}/{self.branch}/{device}/availability"


class MqttSession:
    def __init__(self, config: MqttConfig, *, branch: str, client_id: str | None = None) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix, branch)
        self.client_id = client_id or f"openbranch-{branch}-{uuid.uuid4().hex[:6]}"
        self._handlers: dict[str, list[Handler]] = {}
        self._routes: dict[str, list[Handler]] = {}
        self._inbox: deque[tuple[str, bytes, bool]] = deque()
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._answered = asyncio.Event()  # a CONNACK came, good or bad
        self._refused: str | None = None
        self.protocol = (
            MQTTProtocolVersion.MQTTv311
            if config.protocol == "3.1.1"
            else MQTTProtocolVersion.MQTTv5
        )
        self._client = self._make_client(self.protocol)

    def _make_client(self, protocol: MQTTProtocolVersion) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol
        )
        if self.config.username:
            password = self.config.password.resolve() if self.config.password else None
            client.username_pw_set(self.config.username, password)
        if self.config.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.topics.status, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self, wait: float = 5.0) -> bool:
        """Start the session and wait up to ``wait`` seconds for the broker.

        Returns False (and keeps trying in the background) when the broker does not answer in
        time: the gateway goes on polling and committing readings without it. With protocol
        ``auto``, MQTT v5 is asked for first; a broker that refuses it, or never answers a v5
        CONNECT (some do), gets 3.1.1.
        """
        self._loop = asyncio.get_running_loop()
        self._answered.clear()
        self._client.connect_async(
            self.config.host, self.config.port, keepalive=int(self.config.keepalive)
        )
        self._client.loop_start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._answered.wait(), wait)
        if self.connected:
            return True
        if self.config.protocol == "auto" and self.protocol is MQTTProtocolVersion.MQTTv5:
            log.info("MQTT: no v5 session (%s); trying 3.1.1", self._refused or "no answer")
            self._client.disconnect()
            await asyncio.to_thread(self._client.loop_stop)  # joins paho's thread
            self.protocol = MQTTProtocolVersion.MQTTv311
            self._client = self._make_client(self.protocol)
            return await self.connect(wait)
        log.warning(
            "MQTT broker %s:%s: %s; retrying in the background",
            self.config.host,
            self.config.port,
            self._refused or "no answer",
        )
        return False

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            if "protocol" in str(reason).lower():
                client.disconnect()
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._answered.set)
            return
        client.publish(self.topics.status, b"online", qos=1, retain=True)
        for topic in self._handlers:
            client.subscribe(topic, qos=1)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connected.set)
            self._loop.call_soon_threadsafe(self._answered.set)
            self._loop.call_soon_threadsafe(self._answered.set)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._connected.clear)
        if reason.is_failure:
            log.warning("MQTT: disconnected (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        """On paho's thread: queue the message; wake the loop once per burst, not per message."""
        if self._loop is None or self._loop.is_closed():
            return
        self._inbox.append((message.topic, bytes(message.payload), bool(message.retain)))
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._dispatch_all)

    def _dispatch_all(self) -> None:
        self._wake_pending = False
        while self._inbox:
            topic, payload, retained = self._inbox.popleft()
            for handler in self._handlers_for(topic):
                try:
                    handler(topic, payload, retained)
                except Exception:
                    log.exception("MQTT: a handler failed on %s", topic)

    def _handlers_for(self, topic: str) -> list[Handler]:
        found = self._routes.get(topic)
        if found is None:
            found = [
                h
                for pattern, handlers in self._handlers.items()
                if mqtt.topic_matches_sub(pattern, topic)
                for h in handlers
            ]
            if len(self._routes) > 10_000:
                self._routes.clear()
            self._routes[topic] = found
        return found

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        first = topic_filter not in self._handlers
        self._handlers.setdefault(topic_filter, []).append(handler)
        self._routes.clear()
        if first and self.connected:
            self._client.subscribe(topic_filter, qos=1)

    def publish(
        self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1
    ) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def publish_state(self, device: str, state: Mapping[str, object]) -> None:
        self.publish(self.topics.state(device), json.dumps(state, default=str), retain=True)

    def publish_availability(self, device: str, available: bool) -> None:
        self.publish(
            self.topics.availability(device), b"online" if available else b"offline", retain=True
        )

    async def close(self) -> None:
        """Say ``offline`` (retained), then disconnect cleanly."""
        if self.connected:
            info = self._client.publish(self.topics.status, b"offline", qos=1, retain=True)
            await asyncio.to_thread(info.wait_for_publish, 5)
            self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)


def publish_once(config: MqttConfig, topic: str, payload: str, *, timeout: float = 10.0) -> None:
    """Connect, publish one QoS 1 message (not retained), disconnect. For the CLI."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"openbranch-cli-{uuid.uuid4().hex[:6]}"
    )
    if config.username:
        client.username_pw_set(
            config.username, config.password.resolve() if config.password else None
        )
    if config.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    client.connect(config.host, config.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
