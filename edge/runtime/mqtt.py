"""The gateway's MQTT session: availability, retained state, and subscriptions for devices.

Topic layout (prefix = ``mqtt.topic_prefix``, default ``openbranch``):

    {prefix}/{branch}/status                  retained "online" after every connect;
                                              "offline" as the last will and on a clean stop
    {prefix}/{branch}/{device}/state          retained JSON: the device's last values per
                                              measurement, and "time" (ISO 8601, UTC)
    {prefix}/{branch}/{device}/availability   retained "online" / "offline"
    {prefix}/{branch}/control                 signed commands to the gateway (edge.control)

Devices publish on their own topics (``transport.topic`` of each device, e.g.
``zigbee2mqtt/front-door``); the gateway subscribes to those.

MQTT v5 is used when the broker offers it (with ``protocol: auto``, a broker that refuses v5
or never answers a v5 CONNECT gets 3.1.1). The session reconnects by itself (paho's network
thread, 1 s to 30 s apart) and after every connect publishes the birth message, subscribes
again and re-publishes the latest retained state of every device. While it is offline nothing
retained is queued: only the latest value per topic is kept. Handlers run on the asyncio loop
that connected, never on paho's network thread.

Errors: ``MqttError`` (a ``ConnectionError``) when the broker cannot be reached or refuses the
session and the caller asked to be told (``connect(required=True)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt._packet as paho_packet
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from openbranch.edge.core.config import MqttConfig
from openbranch.edge.core.messaging import Handler, Topics

__all__ = ["Handler", "MqttError", "MqttSession", "Topics", "publish_once"]

log = logging.getLogger(__name__)


MAX_QUEUED = 1000  # QoS 1 messages paho holds unacknowledged; more are refused, not buffered
STOP_WAIT = 10.0  # seconds a stop waits for paho's network thread
READ_CHUNK = 64 * 1024  # bytes taken from the socket per recv() on the receive path
INBOX_MAX = 10_000  # messages received but not yet handled; at this, paho's thread stops reading
DISPATCH_SLICE = 500  # messages handled per turn of the event loop


class _SharedTableProperties(Properties):
    """paho's MQTT v5 ``Properties``, built without rebuilding its lookup tables.

    paho decodes every incoming v5 PUBLISH into a fresh ``Properties``, whose constructor
    builds two dictionaries of every property name, identifier and type, about 30 entries
    each, for each message: at thousands of messages a second that was the largest single
    cost of the v5 receive path (bench/ingest.py, py-spy). The tables are constants that no
    method changes, so every instance here shares one set; the behaviour is paho's.
    """

    _TABLES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]

    def __init__(self, packetType: int) -> None:  # noqa: N803  # paho's parameter name
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", self._TABLES.types)
        object.__setattr__(self, "names", self._TABLES.names)
        object.__setattr__(self, "properties", self._TABLES.properties)


# paho's PUBLISH decoder looks the class up in its module at every message.
paho_packet.Properties = _SharedTableProperties  # type: ignore[attr-defined]


def _varint(buf: bytearray, pos: int, end: int) -> tuple[int, int]:
    """MQTT's variable byte integer at ``pos``: (value, position after it); (-1, pos) when it
    runs past ``end`` or over four bytes."""
    value = shift = 0
    i = pos
    while i < end and shift < 28:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
    return -1, pos


class _BufferedClient(mqtt.Client):
    """paho's client, reading the socket in 64 KiB chunks instead of a few bytes at a time.

    Stock paho reads a packet with three or more ``recv()`` calls (the command byte, each
    byte of the length, then the body) and handles one packet per ``select()``: under a stream
    of small PUBLISH packets that is several system calls and a GIL hand-over per message
    (bench/ingest.py). Here ``_sock_recv`` serves paho's small reads from a buffer filled by
    one ``recv()``, and ``loop_read`` goes on until the buffer is empty, so no received byte
    waits for a ``select()`` that would never wake for it. paho's own packet parser, keep-alive
    and reconnect logic are unchanged; the buffer is dropped with the socket.

    ``fast_publish(topic, payload, retained)``, when set, is the fast path for the bulk of the
    traffic: complete QoS 0 PUBLISH packets already in the buffer, between two packets paho
    handles, are decoded here (topic, payload, retain flag; v5 properties skipped) and handed
    over without paho's per-packet state machine and message objects. Everything else (QoS 1
    and 2, other packet types, a packet cut by the end of the buffer, a topic alias or a topic
    that is not UTF-8) goes through paho as before.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._rbuf = bytearray()
        self._rpos = 0
        self.fast_publish: Callable[[str, bytes, bool], None] | None = None
        super().__init__(*args, **kwargs)

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            chunk = super()._sock_recv(READ_CHUNK)  # BlockingIOError when nothing is there
            if not chunk:
                return b""  # the broker closed the connection
            self._rbuf = bytearray(chunk)
            self._rpos = 0
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return bytes(self._rbuf[start : self._rpos])

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf):
            if self.fast_publish is not None and self._in_packet["command"] == 0:
                self._take_publishes(self.fast_publish)  # paho is between two packets
                if self._rpos >= len(self._rbuf):
                    break
            rc = super().loop_read(max_packets)
        return rc

    def _take_publishes(self, deliver: Callable[[str, bytes, bool], None]) -> None:
        buf, pos, end = self._rbuf, self._rpos, len(self._rbuf)
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        taken = 0
        while pos < end:
            header = buf[pos]
            if header & 0xF6 != 0x30:  # not a PUBLISH at QoS 0
                break
            length, i = _varint(buf, pos + 1, end)
            if length < 2 or i + length > end:
                break  # malformed, or cut by the end of the buffer: paho's turn
            stop = i + length
            size = (buf[i] << 8) | buf[i + 1]
            start = i + 2 + size
            if size == 0 or start > stop:
                break  # a topic alias (v5) or a malformed packet
            if v5:
                props, start = _varint(buf, start, stop)
                start += props
                if props < 0 or start > stop:
                    break
            try:
                topic = buf[i + 2 : i + 2 + size].decode("utf-8")
            except UnicodeDecodeError:
                break
            pos = stop
            taken += 1
            deliver(topic, bytes(buf[start:stop]), bool(header & 1))
        self._rpos = pos
        if taken:
            with self._msgtime_mutex:  # what paho's keep-alive reads
                self._last_bytes_received = time.monotonic()

    def _sock_close(self) -> None:
        self._rbuf = bytearray()
        self._rpos = 0
        super()._sock_close()


class MqttError(ConnectionError):
    """The broker could not be reached or refused the session."""


class MqttSession:
    """One connection to the branch's broker, shared by the gateway and its MQTT devices."""

    def __init__(self, config: MqttConfig, *, branch: str, client_id: str | None = None) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix, branch)
        self.client_id = client_id or f"openbranch-{branch}-{uuid.uuid4().hex[:6]}"
        # Shared with paho's thread, under _lock: what to restore after every (re)connect.
        self._lock = threading.Lock()
        self._online = False
        self._handlers: dict[str, list[Handler]] = {}
        self._retained: dict[str, bytes] = {}
        self._unacked: dict[int, str] = {}  # SUBSCRIBE packet id -> topic filter, until SUBACK
        # Loop side.
        self._routes: dict[str, list[Handler]] = {}
        self._inbox: deque[tuple[str, bytes, bool]] = deque()
        self._wake_pending = False
        self._room = threading.Event()  # set while the inbox is below INBOX_MAX / 2
        self._room.set()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._subscribed = asyncio.Event()  # connected, and the broker granted every SUBSCRIBE
        self._answered = asyncio.Event()  # a CONNACK came (good or bad) or the TCP connect failed
        self._failure: str | None = None
        self._unreachable = False
        self.protocol = (
            MQTTProtocolVersion.MQTTv311
            if config.protocol == "3.1.1"
            else MQTTProtocolVersion.MQTTv5
        )
        self._client = self._make_client(self.protocol)

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def _make_client(self, protocol: MQTTProtocolVersion) -> mqtt.Client:
        client = _BufferedClient(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol
        )
        if self.config.username:
            password = self.config.password.resolve() if self.config.password else None
            client.username_pw_set(self.config.username, password)
        if self.config.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.topics.status, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(MAX_QUEUED)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.fast_publish = self._on_publish
        return client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def connect(self, wait: float = 5.0, *, required: bool = False) -> bool:
        """Start the session and wait up to ``wait`` seconds for the broker's CONNACK.

        Returns True once connected. Otherwise, by default, logs why (naming host:port),
        returns False and keeps trying in the background: the gateway goes on polling and
        committing readings without the broker. With ``required=True`` it stops trying and
        raises MqttError instead. With protocol ``auto``, MQTT v5 is asked for first; a broker
        that refuses it, or accepts the TCP connection but never answers a v5 CONNECT (some
        do), gets 3.1.1.
        """
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._answered.clear()
        self._failure, self._unreachable = None, False
        self._client.connect_async(
            self.config.host, self.config.port, keepalive=int(self.config.keepalive)
        )
        self._client.loop_start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._answered.wait()
        if self.connected:
            return True
        if (
            self.config.protocol == "auto"
            and self.protocol is MQTTProtocolVersion.MQTTv5
            and not self._unreachable
        ):
            log.info("MQTT %s: no v5 session (%s); trying 3.1.1", self.address, self._why())
            await self._stop_client()
            self.protocol = MQTTProtocolVersion.MQTTv311
            self._client = self._make_client(self.protocol)
            return await self.connect(wait, required=required)
        message = f"MQTT broker {self.address}: {self._why()}"
        if required:
            await self._stop_client()
            raise MqttError(message)
        log.warning("%s; retrying in the background", message)
        return False

    async def wait_subscribed(self, wait: float = 5.0) -> bool:
        """Wait until the session is connected and the broker has answered every SUBSCRIBE so
        far; True then. A message published before that may not reach the handlers, since
        the broker only forwards to subscriptions it has set up. A refused filter (e.g. by
        the broker's ACL) is logged naming it and counts as answered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        await asyncio.sleep(0)  # first what paho's thread has already handed over
        while not self._subscribed.is_set():  # set, then cleared again before we looked
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._subscribed.wait()
        return True

    def _why(self) -> str:
        return self._failure or "no answer"

    async def _stop_client(self) -> None:
        client = self._client
        client.disconnect()
        stopping = asyncio.ensure_future(asyncio.to_thread(client.loop_stop))  # joins the thread
        try:
            async with asyncio.timeout(STOP_WAIT):
                await asyncio.shield(stopping)
        except TimeoutError:
            # Never hang a gateway's stop on it; say where paho's thread is stuck instead.
            thread = getattr(client, "_thread", None)
            frame = sys._current_frames().get(thread.ident) if thread and thread.ident else None
            where = "".join(traceback.format_stack(frame)) if frame else "(no stack)"
            log.error(
                "MQTT %s: paho's network thread did not stop in %.0f s; going on without it:\n%s",
                self.address,
                STOP_WAIT,
                where,
            )
            return
        _release(client)

    def _call(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the session's loop (from paho's thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(callback)

    # paho's network thread -------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            self._failure = f"refused: {reason}"
            if "protocol" in str(reason).lower():
                client.disconnect()  # no retries: connect() falls back to 3.1.1
            self._call(self._answered.set)
            return
        with self._lock:  # publishes from the loop wait; none can slip between these
            self._online = True
            client.publish(self.topics.status, b"online", qos=1, retain=True)
            self._unacked.clear()
            for topic in self._handlers:
                self._subscribe_locked(client, topic)
            for topic, payload in self._retained.items():
                client.publish(topic, payload, qos=0, retain=True)
        self._call(self._connected.set)
        self._call(self._update_subscribed)
        self._call(self._answered.set)

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._failure = "unreachable (connection refused or timed out)"
        self._unreachable = True
        self._call(self._answered.set)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None
    ) -> None:
        with self._lock:
            self._online = False
        self._call(self._connected.clear)
        self._call(self._update_subscribed)
        if reason.is_failure:
            log.warning("MQTT %s: disconnected (%s); reconnecting", self.address, reason)

    def _subscribe_locked(self, client: mqtt.Client, topic_filter: str) -> None:
        """SUBSCRIBE at QoS 1 and remember its packet id until the SUBACK (hold ``_lock``: the
        SUBACK is handled under it, so it cannot come before the id is remembered)."""
        rc, mid = client.subscribe(topic_filter, qos=1)
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            self._unacked[mid] = topic_filter

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        with self._lock:
            topic_filter = self._unacked.pop(mid, None)
        if topic_filter is not None and any(r.is_failure for r in reasons):
            log.error(
                "MQTT %s: the broker refused the subscription to %s (%s); check its ACL",
                self.address,
                topic_filter,
                ", ".join(str(r) for r in reasons),
            )
        self._call(self._update_subscribed)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._on_publish(message.topic, bytes(message.payload), bool(message.retain))

    def _on_publish(self, topic: str, payload: bytes, retained: bool) -> None:
        """Queue the message; wake the loop once per burst, not once per message."""
        inbox = self._inbox
        inbox.append((topic, payload, retained))
        if not self._wake_pending:
            self._wake_pending = True
            self._call(self._dispatch_all)
        if len(inbox) >= INBOX_MAX:
            # Back-pressure: the loop is behind by INBOX_MAX messages. Stop reading the socket
            # until it has handled half of them; meanwhile the broker and the kernel's socket
            # buffers hold the rest, and the gateway's memory stays bounded.
            self._room.clear()
            while len(inbox) >= INBOX_MAX // 2 and not self._closing:
                loop = self._loop
                if loop is None or loop.is_closed():
                    break
                self._room.wait(0.5)

    # the asyncio loop ---------------------------------------------------------------------

    def _update_subscribed(self) -> None:
        with self._lock:
            granted = self._online and not self._unacked
        if granted:
            self._subscribed.set()
        else:
            self._subscribed.clear()

    def _dispatch_all(self) -> None:
        self._wake_pending = False
        inbox = self._inbox
        for _ in range(DISPATCH_SLICE):  # then let timers and other tasks run
            if not inbox:
                break
            topic, payload, retained = inbox.popleft()
            for handler in self._handlers_for(topic):
                try:
                    handler(topic, payload, retained)
                except Exception:
                    log.exception("MQTT: a handler failed on %s", topic)
        if inbox and not self._wake_pending:
            self._wake_pending = True
            self._call(self._dispatch_all)
        if len(inbox) < INBOX_MAX // 2:
            self._room.set()

    def _handlers_for(self, topic: str) -> list[Handler]:
        found = self._routes.get(topic)
        if found is None:
            with self._lock:
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
        """Call ``handler(topic, payload, retained)`` on this loop for every message matching
        ``topic_filter`` (QoS 1), now and after every reconnect."""
        with self._lock:
            first = topic_filter not in self._handlers
            self._handlers.setdefault(topic_filter, []).append(handler)
            if first and self._online:  # else the next connect subscribes
                self._subscribed.clear()
                self._subscribe_locked(self._client, topic_filter)
        self._routes.clear()

    def publish(
        self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1
    ) -> None:
        """Publish now. A retained message is also remembered and published again after every
        reconnect (offline, only the latest per topic is kept); others are queued by paho up
        to MAX_QUEUED while the broker is away."""
        data = payload.encode() if isinstance(payload, str) else payload
        with self._lock:
            if retain:
                self._retained[topic] = data
            online = self._online
        if online or not retain:
            self._client.publish(topic, data, qos=qos, retain=retain)

    # State and availability go with QoS 0: every reconnect re-asserts the latest value, and
    # paho would re-send an unacknowledged QoS 1 message after that, older than the latest.

    def publish_state(self, device: str, state: Mapping[str, object]) -> None:
        """``{prefix}/{branch}/{device}/state``, retained: the device's last values as JSON."""
        self.publish(self.topics.state(device), json.dumps(state, default=str), retain=True, qos=0)

    def publish_availability(self, device: str, available: bool) -> None:
        """``{prefix}/{branch}/{device}/availability``, retained: ``online`` / ``offline``."""
        self.publish(
            self.topics.availability(device),
            b"online" if available else b"offline",
            retain=True,
            qos=0,
        )

    async def close(self) -> None:
        """Say ``offline`` (retained), then disconnect cleanly."""
        self._closing = True  # paho's thread must not wait for the inbox any more
        self._room.set()
        if self.connected:
            info = self._client.publish(self.topics.status, b"offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not queued: the will says it
                await asyncio.to_thread(info.wait_for_publish, 5)
        await self._stop_client()
        self._connected.clear()
        # What paho received is acknowledged to the broker (QoS 1) and will not come again:
        # hand it to the handlers now, before the gateway's last commit.
        while self._inbox:
            self._dispatch_all()


def _release(client: mqtt.Client) -> None:
    """Break the client's reference cycle through our callbacks and close its wake-up socket
    pair: paho closes it only in ``__del__``, which the cyclic collector may run after the
    sockets' own finalizers (a ResourceWarning), e.g. when the client hangs off a gateway's
    cycles."""
    client.on_connect = None
    client.on_connect_fail = None
    client.on_disconnect = None
    client.on_message = None
    client.on_subscribe = None
    if isinstance(client, _BufferedClient):
        client.fast_publish = None
    client._reset_sockets(sockpair_only=True)  # the loop is stopped: close them now


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
    try:
        client.connect(config.host, config.port)
    except OSError as exc:
        raise MqttError(f"MQTT broker {config.host}:{config.port}: {exc}") from exc
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
