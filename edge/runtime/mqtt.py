"""The gateway's MQTT session: availability, retained state, and subscriptions for devices.

Topic layout (prefix = ``mqtt.topic_prefix``, default ``openbranch``):

    {prefix}/{branch}/status                  retained "online" after every connect;
                                              "offline" as the last will and on a clean stop
    {prefix}/{branch}/{device}/state          retained JSON: the device's last values per
                                              measurement, and "time" (ISO 8601, UTC)
    {prefix}/{branch}/{device}/availability   retained "online" / "offline"
    {prefix}/{branch}/control                 signed commands to the gateway (edge.control)

Devices publish on their own topics (``transport.topic`` of each device, e.g.
``zigbee2mqtt/front-door``); the gateway subscribes to those at QoS 1.

The session runs on the asyncio event loop, on paho's public API only (its documented
external-loop integration, decision 41): the socket is registered with the loop, which calls
``loop_read`` when it is readable (at most ``READ_BATCH`` messages per readable event, so
timers run during a flood, and what the gateway has not read yet waits in TCP and at the
broker), ``loop_write`` when paho has something to send, and ``loop_misc`` every second for
keep-alive. Handlers run on the loop, inside ``loop_read``. Connecting (DNS, TCP, TLS) runs in
a worker thread so it never blocks the loop. There is no paho network thread.

A persistent session: the client id is stable (``mqtt.client_id``, default
``openbranch-{branch}``), MQTT v5 connects with ``clean_start=False`` and a session expiry of
``mqtt.session_expiry`` (3.1.1: ``clean_session=False``), and subscriptions are QoS 1, so the
broker keeps QoS 1 messages for the gateway while it restarts and delivers them after.

MQTT v5 is used when the broker offers it (with ``protocol: auto``, a broker that refuses v5
or never answers a v5 CONNECT gets 3.1.1). The session reconnects by itself (1 s to 30 s
apart, doubling) and after every connect publishes the birth message, subscribes again and
re-publishes the latest retained state of every device. While it is offline nothing retained
is queued: only the latest value per topic is kept; other QoS 1 messages are held, up to
``MAX_QUEUED``.

Whatever raises inside paho's calls or a handler is caught and logged with its traceback, and
counted in ``errors`` (``last_error`` says what it was); a failure in paho's calls drops the
connection and the session reconnects, a handler's failure costs only that message.

``hold_back(True)`` stops reading (the gateway's store cannot keep up): messages wait in TCP
and at the broker; ``hold_back(False)`` reads again.

Acknowledgement: by default paho acknowledges a QoS 1 message once its handlers returned.
With ``manual_ack=True`` the broker is told only through ``ack_through(marker)``, for every
QoS 1 message handed over up to ``marker`` (a value of ``delivered``), in order; what was
handed over but not acknowledged when the connection ends is sent again by the broker.

Errors: ``MqttError`` (a ``ConnectionError``) when the broker cannot be reached or refuses the
session and the caller asked to be told (``connect(required=True)``); ``ValueError`` from
``subscribe`` for a filter MQTT does not allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import threading
import traceback
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from openbranch.edge.core.config import MqttConfig
from openbranch.edge.core.messaging import Handler, Topics

__all__ = ["Handler", "MqttError", "MqttSession", "Topics", "publish_once"]

log = logging.getLogger(__name__)


MAX_QUEUED = 1000  # QoS 1 messages held while offline or unacknowledged; more are refused
READ_BATCH = 200  # messages handled per readable event of the socket; then the loop goes on
TICK = 1.0  # seconds between two loop_misc calls (keep-alive)
RECONNECT_MIN = 1.0  # seconds before the first reconnect; doubled per failure up to:
RECONNECT_MAX = 30.0
CLOSE_WAIT = 5.0  # seconds close() waits for the broker to take "offline" and the DISCONNECT
STOP_WAIT = 10.0  # seconds close() waits for a connect still running in its worker thread

_Outcome = Literal["held", "failed", "fallback"]
_CLOSED = "closed by the broker before a CONNACK"


class MqttError(ConnectionError):
    """The broker could not be reached or refused the session."""


def check_filter(topic_filter: str) -> None:
    """Raise ValueError, naming the filter, unless MQTT allows it as a subscription filter
    (paho raises for some of these, the broker drops the connection for others)."""
    data = topic_filter.encode("utf-8")
    if not data or len(data) > 65535:
        problem = "must be 1 to 65,535 bytes"
    elif "\x00" in topic_filter:
        problem = "must not contain U+0000"
    elif any((b"+" in level or b"#" in level) and len(level) > 1 for level in data.split(b"/")) or (
        b"#" in data and not data.endswith(b"#")
    ):
        problem = "'+' and '#' must be a whole level, and '#' the last"
    else:
        return
    raise ValueError(f"MQTT topic filter {topic_filter[:80]!r}: {problem}")


class MqttSession:
    """One connection to the branch's broker, shared by the gateway and its MQTT devices."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        branch: str,
        client_id: str | None = None,
        manual_ack: bool = False,
    ) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix, branch)
        self.client_id = client_id or config.client_id or f"openbranch-{branch}"
        self.manual_ack = manual_ack
        # What to restore after every (re)connect.
        self._handlers: dict[str, list[Handler]] = {}
        self._qos: dict[str, int] = {}  # topic filter -> QoS asked for
        self._retained: dict[str, bytes] = {}
        self._held: deque[tuple[str, bytes, int]] = deque()  # QoS > 0, published while offline
        self._unacked: dict[int, str] = {}  # SUBSCRIBE packet id -> topic filter, until SUBACK
        self._routes: dict[str, list[Handler]] = {}
        # Counters a status page or an alert can read.
        self.delivered = 0  # messages received and handed to their handlers (if any)
        self.errors = 0  # exceptions caught: in paho's calls, in handlers, in connecting
        self.failed_messages = 0  # messages a handler raised on
        self.unhandled = 0  # messages no subscription of this session's handlers matched
        self.last_error: str | None = None
        self.reconnects = 0  # connections after the first
        self._to_ack: deque[tuple[int, int]] = deque()  # manual ack: (delivered, packet id)
        # Connection state; everything below runs on the loop's thread.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._opening: asyncio.Future[None] | None = None  # the connect in a worker thread
        self._fd: int | None = None  # the socket registered with the loop
        self._reading = False
        self._writing = False
        self._ticker: asyncio.TimerHandle | None = None
        self._online = False  # CONNACK accepted, connection not yet lost
        self._ever_online = False
        self._closing = False
        self._holding = False  # hold_back(True): read nothing until released
        self._released = asyncio.Event()
        self._released.set()
        self._connack_wait = 5.0
        self._connected = asyncio.Event()
        self._subscribed = asyncio.Event()  # connected, and the broker granted every SUBSCRIBE
        self._answered = asyncio.Event()  # connected, or an attempt failed for good
        self._settled = asyncio.Event()  # this attempt: a CONNACK came or the connection ended
        self._lost = asyncio.Event()  # this attempt: the connection ended
        self._bye: tuple[int, asyncio.Event] | None = None  # close(): "offline" until PUBACK
        self._refusal: str | None = None
        self._failure: str | None = None
        self.protocol = (
            MQTTProtocolVersion.MQTTv311
            if config.protocol == "3.1.1"
            else MQTTProtocolVersion.MQTTv5
        )
        self._client = self._make_client(self.protocol)

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def _persistent(self) -> bool:
        return self.config.session_expiry > 0

    def _make_client(self, protocol: MQTTProtocolVersion) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            clean_session=None if protocol is MQTTProtocolVersion.MQTTv5 else not self._persistent,
            reconnect_on_failure=False,  # reconnecting is ours (paho's would block the loop)
            manual_ack=self.manual_ack,
        )
        if self.config.username:
            password = self.config.password.resolve() if self.config.password else None
            client.username_pw_set(self.config.username, password)
        if self.config.tls:
            client.tls_set(ca_certs=_ca(self.config), cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.topics.status, b"offline", qos=1, retain=True)
        client.max_queued_messages_set(MAX_QUEUED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return client

    # the caller's side --------------------------------------------------------------------

    async def connect(self, wait: float = 5.0, *, required: bool = False) -> bool:
        """Start the session and wait for the broker's CONNACK (``wait`` seconds per protocol
        tried).

        Returns True once connected. Otherwise, by default, logs why (naming host:port),
        returns False and keeps trying in the background: the gateway goes on polling and
        committing readings without the broker. With ``required=True`` it stops trying and
        raises MqttError instead. With protocol ``auto``, MQTT v5 is asked for first; a broker
        that refuses it, or accepts the TCP connection but never answers a v5 CONNECT within
        ``wait`` seconds (some do), gets 3.1.1.

        Subscribe first: the broker hands over what it kept for the persistent session right
        after the CONNACK, and a message no handler takes is counted in ``unhandled`` and
        acknowledged.
        """
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._closing = False
        self._connack_wait = wait
        self._answered.clear()
        if self.connected:
            return True
        self._failure = None
        if self._client.on_message is None:  # closed before: start with a fresh client
            self._client = self._make_client(self.protocol)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"mqtt {self.address}")
        budget = wait * (2 if self._may_fall_back() else 1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget):
                await self._answered.wait()
        if self._connected.is_set():  # (not the property: mypy would keep its narrowing)
            return True
        message = f"MQTT broker {self.address}: {self._failure or 'no answer'}"
        if required:
            await self._shutdown()
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
        while not self._subscribed.is_set():
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._subscribed.wait()
        return True

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        """Call ``handler(topic, payload, retained)`` on this loop for every message matching
        ``topic_filter``, now and after every reconnect. QoS 1 by default: what a device
        publishes at QoS 1 while the gateway is away waits at the broker."""
        check_filter(topic_filter)
        if qos not in (0, 1, 2):
            raise ValueError(f"QoS {qos} is not 0, 1 or 2")
        before = self._qos.get(topic_filter)
        self._handlers.setdefault(topic_filter, []).append(handler)
        self._qos[topic_filter] = max(qos, before or 0)
        if self._online and (before is None or qos > before):  # else the next connect does it
            self._subscribed.clear()
            self._subscribe_now(topic_filter)
        self._routes.clear()

    def publish(
        self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1
    ) -> None:
        """Publish now. A retained message is also remembered and published again after every
        reconnect (offline, only the latest per topic is kept); other QoS 1 messages are held
        while the broker is away, up to MAX_QUEUED (the oldest goes first); QoS 0 ones that
        find no connection are dropped."""
        data = payload.encode() if isinstance(payload, str) else payload
        if retain:
            self._retained[topic] = data
        if self._online:
            self._client.publish(topic, data, qos=qos, retain=retain)
        elif not retain and qos > 0:
            if len(self._held) >= MAX_QUEUED:
                self._held.popleft()
            self._held.append((topic, data, qos))

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

    def hold_back(self, hold: bool) -> None:
        """Stop reading the broker's messages (``True``: the gateway's store cannot keep up)
        or read again (``False``). Meanwhile they wait in TCP and at the broker (QoS 1 ones
        in the persistent session) and publishing goes on. A hold longer than about twice the
        keep-alive ends the connection (paho gets no PINGRESP; the broker sends the will); the
        session connects again once released."""
        self._holding = hold
        if hold:
            self._released.clear()
            if self._online:  # before the CONNACK the socket is read for it
                self._stop_reading()
            return
        self._released.set()
        if self._fd is not None and not self._reading and self._loop is not None:
            self._reading = True
            self._loop.add_reader(self._fd, self._readable)
            self._loop.call_soon(self._readable)  # TLS: what was decrypted before the hold

    def ack_through(self, marker: int) -> int:
        """With ``manual_ack``: acknowledge to the broker, in the order they came, every QoS 1
        message handed to the handlers up to ``marker`` (a value ``delivered`` had after it);
        returns how many. Messages of a connection that has ended are not acknowledged: the
        broker sends them again (persistent session)."""
        count = 0
        queue = self._to_ack
        while queue and queue[0][0] <= marker:
            _, mid = queue.popleft()
            self._client.ack(mid, 1)
            count += 1
        return count

    async def close(self) -> None:
        """Say ``offline`` (retained), then disconnect cleanly. The broker keeps the session
        (its subscriptions and what arrives for it) for ``session_expiry``."""
        self._closing = True
        if self._online:
            if self.manual_ack and not self._reading and self._fd is not None:
                # Held back (the gateway's stop): read again, so the broker's PUBACKs free
                # paho's window for what is still queued to go out (retained configs, the
                # last states); what arrives now is left with the broker (_on_message).
                self.hold_back(False)
            info = self._client.publish(self.topics.status, b"offline", qos=1, retain=True)
            said = asyncio.Event()
            self._bye = (info.mid, said)
            if self._reading:  # (held back, its PUBACK would wait behind unread messages)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_WAIT):  # else the last will says it
                        await said.wait()
            if self._online:
                # Read no more: a message handled now would have its PUBACK queued after the
                # DISCONNECT, never sent, and come again to the next session as a duplicate.
                self._stop_reading()
                self._client.disconnect()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(CLOSE_WAIT):
                        await self._lost.wait()
        await self._shutdown()

    # the session's task ---------------------------------------------------------------------

    def _stopping(self) -> bool:
        return self._closing

    def _may_fall_back(self) -> bool:
        return self.config.protocol == "auto" and self.protocol is MQTTProtocolVersion.MQTTv5

    async def _run(self) -> None:
        """The session's life: connect, hold the connection until it ends, wait, again."""
        delay = RECONNECT_MIN
        while not self._closing:
            await self._released.wait()  # held back: connecting would only fill TCP again
            try:
                outcome = await self._attempt()
            except Exception as exc:  # a bug of ours: never let it end the session
                self._count_error("session", exc)
                log.exception("MQTT %s: the session's task failed; reconnecting", self.address)
                self._drop(self._client, close=False)
                outcome = "failed"
            if self._stopping():
                return
            if outcome == "fallback":
                continue
            if outcome == "held":
                delay = RECONNECT_MIN
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _attempt(self) -> _Outcome:
        client = self._client
        self._settled.clear()
        self._lost.clear()
        self._refusal = None
        properties = None
        clean_start: bool = not self._persistent
        if self.protocol is MQTTProtocolVersion.MQTTv5 and self._persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = int(self.config.session_expiry)
        opening = asyncio.ensure_future(
            asyncio.to_thread(
                _connect,
                client,
                host=self.config.host,
                port=self.config.port,
                keepalive=int(self.config.keepalive),
                clean_start=clean_start if self.protocol is MQTTProtocolVersion.MQTTv5 else None,
                properties=properties,
            )
        )
        self._opening = opening
        try:
            await asyncio.shield(opening)  # close() waits for the thread, never abandons it
        except OSError as exc:
            self._give_up(f"unreachable ({exc})")
            return "failed"
        except Exception as exc:  # e.g. a setting paho refuses
            self._count_error("connect", exc)
            log.exception("MQTT %s: connecting failed", self.address)
            self._give_up(f"connect failed ({exc!r})")
            return "failed"
        sock = client.socket()
        if sock is None:
            self._give_up("no socket after connect")
            return "failed"
        self._register(sock)
        try:
            async with asyncio.timeout(self._connack_wait):
                await self._settled.wait()
        except TimeoutError:
            self._refusal = "no answer"
        if self._online:
            await self._lost.wait()
            return "held"
        why = self._refusal or _CLOSED
        fallback = self._may_fall_back() and (
            why in ("no answer", _CLOSED)
            or (why.startswith("refused") and "protocol" in why.lower())
        )
        self._drop(client, close=fallback)
        if fallback:
            log.info("MQTT %s: no v5 session (%s); trying 3.1.1", self.address, why)
            _release(client)
            self.protocol = MQTTProtocolVersion.MQTTv311
            self._client = self._make_client(self.protocol)
            return "fallback"
        self._give_up(why)
        return "failed"

    def _give_up(self, why: str) -> None:
        """This attempt failed: tell connect(), and log it at debug level after the first."""
        first = not self._answered.is_set()
        self._failure = why
        self._answered.set()
        if not first or self._ever_online:
            log.debug("MQTT %s: %s; retrying", self.address, why)

    async def _shutdown(self) -> None:
        """Stop the session's task and close the socket (no DISCONNECT: see close())."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait({task})
        opening = self._opening
        if opening is not None and not opening.done():
            # A connect still in its worker thread (DNS or TCP can take long): wait for it
            # rather than touch the client beside it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_WAIT):
                    await asyncio.wait({opening})
            if opening.done() and not opening.cancelled():
                opening.exception()  # retrieved: it was the attempt's, now moot
            if not opening.done():
                log.error(
                    "MQTT %s: a connect did not return in %.0f s; leaving it behind",
                    self.address,
                    STOP_WAIT,
                )
                return
        self._drop(self._client, close=True)
        _release(self._client)

    # the connection on the loop ---------------------------------------------------------------

    def _register(self, sock: Any) -> None:
        loop = self._loop
        assert loop is not None
        self._fd = sock.fileno()
        self._reading = True
        loop.add_reader(self._fd, self._readable)
        if self._client.want_write():
            self._writing = True
            loop.add_writer(self._fd, self._writable)
        self._ticker = loop.call_later(TICK, self._tick)

    def _stop_reading(self) -> None:
        if self._fd is not None and self._reading and self._loop is not None:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _unregister(self) -> None:
        fd, self._fd = self._fd, None
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if fd is None or self._loop is None or self._loop.is_closed():
            return
        if self._reading:
            self._reading = False
            self._loop.remove_reader(fd)
        if self._writing:
            self._writing = False
            self._loop.remove_writer(fd)

    def _drop(self, client: mqtt.Client, *, close: bool) -> None:
        """End the connection without DISCONNECT (the broker sends the last will). The socket
        is shut down now and closed by paho at the next connect (``close``: now)."""
        self._unregister()
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]  # a real socket
            if close:
                sock.close()
        self._on_lost()

    def _readable(self) -> None:
        if not self._reading:
            return  # a TLS re-read scheduled before the socket went
        client = self._client
        read, success = client.loop_read, MQTTErrorCode.MQTT_ERR_SUCCESS
        try:
            start = self.delivered
            while self.delivered - start < READ_BATCH:
                seen = self.delivered
                if read() != success or not self._reading:
                    return  # paho closed the socket and said why (on_disconnect)
                if self.delivered == seen:
                    # Nothing more, half a packet, or a packet that was not a message: the
                    # loop's selector calls again while bytes wait in the socket.
                    break
            sock = client.socket()
            if self._fd is not None and sock is not None and _pending(sock):
                # TLS: decrypted bytes the selector cannot see; read them on the next turn
                assert self._loop is not None
                self._loop.call_soon(self._readable)
        except Exception as exc:
            self._fail("loop_read", exc)

    def _writable(self) -> None:
        try:
            self._client.loop_write()
        except Exception as exc:
            self._fail("loop_write", exc)

    def _tick(self) -> None:
        self._ticker = None
        try:
            self._client.loop_misc()
        except Exception as exc:
            self._fail("loop_misc", exc)
            return
        if self._fd is not None and self._loop is not None:
            self._ticker = self._loop.call_later(TICK, self._tick)

    def _fail(self, where: str, exc: BaseException) -> None:
        """paho raised: log it with its traceback, count it, drop the connection; the
        session's task reconnects."""
        self._count_error(where, exc)
        if not self._online:
            self._refusal = f"{where} raised"  # not a reason to try 3.1.1
        log.error(
            "MQTT %s: %s raised; reconnecting\n%s",
            self.address,
            where,
            "".join(traceback.format_exception(exc)),
        )
        self._drop(self._client, close=False)

    def _count_error(self, where: str, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{where}: {type(exc).__name__}: {exc}"

    def _on_lost(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        was = self._online
        self._online = False
        self._to_ack.clear()  # those packet ids died with the connection
        self._connected.clear()
        self._update_subscribed()
        self._settled.set()
        self._lost.set()
        if was and not self._closing:
            log.warning("MQTT %s: connection lost; reconnecting", self.address)

    # paho's callbacks (on the loop's thread, inside loop_read/loop_write/loop_misc) -----------

    def _on_loop(self) -> bool:
        """False inside connect's worker thread: the loop registers the socket afterwards."""
        return threading.get_ident() == self._thread

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, _sock: Any) -> None:
        if self._on_loop():
            self._unregister()

    def _on_register_write(self, _c: mqtt.Client, _u: Any, _sock: Any) -> None:
        if self._on_loop() and self._fd is not None and not self._writing:
            assert self._loop is not None
            self._writing = True
            self._loop.add_writer(self._fd, self._writable)

    def _on_unregister_write(self, _c: mqtt.Client, _u: Any, _sock: Any) -> None:
        if self._on_loop() and self._fd is not None and self._writing:
            assert self._loop is not None
            self._writing = False
            self._loop.remove_writer(self._fd)

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self._refusal = f"refused: {reason}"
            self._settled.set()
            return  # paho closes the socket
        self._online = True
        if self._ever_online:
            self.reconnects += 1
        log.info(
            "MQTT %s: connected%s (%s, client id %s, the broker %s the session)",
            self.address,
            " again" if self._ever_online else "",
            self.protocol.name,
            self.client_id,
            "kept" if getattr(flags, "session_present", False) else "starts",
        )
        self._ever_online = True
        client.publish(self.topics.status, b"online", qos=1, retain=True)
        self._unacked.clear()
        for topic_filter in self._handlers:
            self._subscribe_now(topic_filter)
        for topic, payload in self._retained.items():
            client.publish(topic, payload, qos=0, retain=True)
        held, self._held = self._held, deque()
        for topic, data, qos in held:
            client.publish(topic, data, qos=qos)
        self._connected.set()
        self._update_subscribed()
        self._answered.set()
        self._settled.set()
        if self._holding:
            self._stop_reading()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure and self._online:
            log.warning("MQTT %s: disconnected (%s)", self.address, reason)
        if self._closing:
            # Our DISCONNECT is out and paho closes the socket next: what the broker sent
            # meanwhile was not acknowledged (it comes again); unread, it would turn the
            # close into a reset that can cost the broker our last packets.
            _discard_unread(_c.socket())
        self._on_lost()

    def _subscribe_now(self, topic_filter: str) -> None:
        """SUBSCRIBE and remember its packet id until the SUBACK."""
        rc, mid = self._client.subscribe(topic_filter, qos=self._qos[topic_filter])
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            self._unacked[mid] = topic_filter

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        topic_filter = self._unacked.pop(mid, None)
        if topic_filter is not None and any(r.is_failure for r in reasons):
            log.error(
                "MQTT %s: the broker refused the subscription to %s (%s); check its ACL",
                self.address,
                topic_filter,
                ", ".join(str(r) for r in reasons),
            )
        self._update_subscribed()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        if self._bye is not None and self._bye[0] == mid:
            self._bye[1].set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if self._closing and self.manual_ack:
            # Closing: the gateway has made its last commit. A message is neither handed
            # over nor acknowledged now; the broker keeps it for the next session.
            return
        self.delivered += 1
        if self.manual_ack and message.qos == 1:
            self._to_ack.append((self.delivered, message.mid))
        try:
            topic = message.topic
        except UnicodeDecodeError as exc:
            self._count_error("message", exc)
            self.failed_messages += 1
            log.warning("MQTT %s: a message on a topic that is not UTF-8, ignored", self.address)
            return
        payload, retained = bytes(message.payload), message.retain
        handlers = self._routes.get(topic)
        if handlers is None:
            handlers = self._handlers_for(topic)
            if not handlers:
                log.debug("MQTT %s: no handler for %s", self.address, topic)
        if not handlers:
            self.unhandled += 1
        for handler in handlers:
            try:
                handler(topic, payload, retained)
            except Exception as exc:
                self._count_error(f"handler on {topic}", exc)
                self.failed_messages += 1
                log.exception("MQTT: a handler failed on %s", topic)

    def _update_subscribed(self) -> None:
        if self._online and not self._unacked:
            self._subscribed.set()
        else:
            self._subscribed.clear()

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


def _connect(
    client: mqtt.Client,
    *,
    host: str,
    port: int,
    keepalive: int,
    clean_start: bool | None,
    properties: Properties | None,
) -> None:
    """paho's blocking connect (DNS, TCP, TLS, then the CONNECT is queued); in a worker
    thread."""
    if clean_start is None:  # 3.1.1: clean_session was given to the client
        client.connect(host, port, keepalive=keepalive)
    else:
        client.connect(
            host, port, keepalive=keepalive, clean_start=clean_start, properties=properties
        )


def _discard_unread(sock: Any) -> None:
    """Read and drop what waits in a non-blocking socket."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass


def _pending(sock: Any) -> bool:
    """Whether a TLS socket holds decrypted bytes that the selector will not report."""
    pending = getattr(sock, "pending", None)
    return bool(pending is not None and pending() > 0)


def _release(client: mqtt.Client) -> None:
    """Break the client's reference cycle through our callbacks and close its socket (paho
    closes it only in ``__del__``, which the cyclic collector may run after the socket's own
    finalizer: a ResourceWarning)."""
    client.on_connect = None
    client.on_disconnect = None
    client.on_message = None
    client.on_subscribe = None
    client.on_publish = None
    client.on_socket_close = None
    client.on_socket_register_write = None
    client.on_socket_unregister_write = None
    sock = client.socket()
    if sock is not None:
        sock.close()


def _ca(config: MqttConfig) -> str | None:
    return None if config.tls_ca is None else str(config.tls_ca)


def publish_once(
    config: MqttConfig,
    topic: str,
    payload: str,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 10.0,
) -> None:
    """Connect with MQTT v5 as ``username`` (anonymous when None), publish one QoS 1 message
    (not retained), disconnect. For the CLI: its own client id, so it never takes over the
    gateway's session. Returns only once the broker acknowledged the message with success;
    a refused login or message (MQTT v5 reason codes, e.g. 0x87 Not authorized) raises
    MqttError naming the reason."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"openbranch-cli-{uuid.uuid4().hex[:6]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    where = f"MQTT broker {config.host}:{config.port}"
    if username is not None:
        client.username_pw_set(username, password)
    if config.tls:
        client.tls_set(ca_certs=_ca(config), cert_reqs=ssl.CERT_REQUIRED)
    connected, published = threading.Event(), threading.Event()
    answers: dict[str, ReasonCode] = {}

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, code: ReasonCode, _p: Any) -> None:
        answers["connack"] = code
        connected.set()

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, code: ReasonCode, _p: Any) -> None:
        answers["puback"] = code
        published.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(config.host, config.port)
    except OSError as exc:
        raise MqttError(f"{where}: {exc}") from exc
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise MqttError(f"{where}: no answer to CONNECT in {timeout:g} s")
        if answers["connack"].is_failure:
            raise MqttError(f"{where} refused the login as {username}: {answers['connack']}")
        client.publish(topic, payload, qos=1)
        if not published.wait(timeout):
            raise MqttError(f"{where}: no acknowledgement in {timeout:g} s")
        if answers["puback"].is_failure:
            raise MqttError(f"{where} refused the message on {topic}: {answers['puback']}")
    finally:
        client.disconnect()
        client.loop_stop()
