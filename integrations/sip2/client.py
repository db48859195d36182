"""The library system over SIP2 2.00: one connection per gateway, a bounded queue in front.

``Sip2LibrarySystem`` implements the edge's ``LibrarySystem``: ``lookup(card, pin)`` puts the
question in a bounded queue (a full queue refuses at once, reason ``queue_full``) that one
worker answers over the one connection, in order. The connection is opened on first use
(TCP, or TLS with the configured CA), logs in (93/94) when a login is configured and asks the
server's status (99/98); it is dropped on any failure and opened again on a later lookup,
after a backoff that doubles from 0.5 s to ``reconnect_max``; a lookup during the backoff
fails at once (reason ``backoff``) instead of waiting. A connection the server closed while
idle is retried once on a new one. Card numbers and PINs never reach a log line.

Exceptions::

    LibrarySystemUnavailable (edge core)
      Sip2Unavailable       .reason: queue_full, backoff, refused, timeout, closed, garbled,
                            tls, login_refused, offline, secret, stopped
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from openbranch.edge.core.admission import LibrarySystemUnavailable, Patron
from openbranch.edge.core.aio import cancel_and_wait
from openbranch.edge.core.config import SecretRef, Sip2Config
from openbranch.integrations.sip2.codec import (
    Decoder,
    Frame,
    GarbledFrame,
    Request,
    Sip2CodecError,
    encode,
    login,
    patron,
    sc_status,
)
from openbranch.integrations.sip2.patron import patron_from

__all__ = ["Sip2LibrarySystem", "Sip2Unavailable"]

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.5


class Sip2Unavailable(LibrarySystemUnavailable):
    """The library system cannot answer now; ``reason`` is a short code, the message says why."""

    def __init__(self, reason: str, detail: str, *, answer_started: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.answer_started = answer_started


@dataclass(slots=True)
class _Job:
    card: str
    pin: str | None
    future: asyncio.Future[Patron]
    queued_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    decoder: Decoder
    sequence: int = 0
    used: bool = False

    def next_sequence(self) -> int:
        self.sequence = (self.sequence + 1) % 10
        return self.sequence


def _secret(ref: SecretRef | None, name: str) -> str:
    if ref is None:
        return ""
    try:
        return ref.resolve()
    except LookupError as exc:
        raise Sip2Unavailable("secret", f"{name}: {exc}") from None


class Sip2LibrarySystem:
    """The SIP2 client; ``on_change(available, reason)`` hears each change of availability
    (the gateway turns it into an alert)."""

    def __init__(
        self,
        config: Sip2Config,
        *,
        on_change: Callable[[bool, str], None] = lambda _available, _reason: None,
    ) -> None:
        self.config = config
        self.on_change = on_change  # settable after the registry built the client
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=config.queue_size)
        self._worker: asyncio.Task[None] | None = None
        self._connection: _Connection | None = None
        self._delay = 0.0
        self._retry_at = 0.0
        self._problem: Sip2Unavailable | None = None
        self._closed = False
        self.connects = 0  # connections opened (figures for tests and the bench)

    @property
    def problem(self) -> str | None:
        """Why the library system is unavailable, or None while it answers."""
        return None if self._problem is None else str(self._problem)

    # -- the LibrarySystem protocol ----------------------------------------------------------

    async def lookup(self, card: str, pin: str | None) -> Patron:
        if self._closed:
            raise Sip2Unavailable("stopped", "the client is closed")
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._work(), name="sip2-library-system"
            )
        future: asyncio.Future[Patron] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Job(card, pin, future))
        except asyncio.QueueFull:
            raise Sip2Unavailable(
                "queue_full", f"{self._queue.qsize()} lookups already wait for the library system"
            ) from None
        return await future

    async def close(self) -> None:
        self._closed = True
        if self._worker is not None:
            await cancel_and_wait((self._worker,))
            self._worker = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(Sip2Unavailable("stopped", "the client was closed"))
        await self._drop()

    # -- the worker ----------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            if job.future.done():  # the caller gave up waiting
                continue
            try:
                patron = await self._answer(job)
            except Sip2Unavailable as exc:
                if not job.future.done():
                    job.future.set_exception(exc)
            except asyncio.CancelledError:
                if not job.future.done():
                    job.future.set_exception(Sip2Unavailable("stopped", "the client was closed"))
                raise
            else:
                if not job.future.done():
                    job.future.set_result(patron)

    async def _answer(self, job: _Job) -> Patron:
        try:
            request = self._request(job)
        except Sip2CodecError:
            # a card or PIN that SIP2 cannot carry (a delimiter, CR, over 255 bytes) belongs to
            # no patron: no library system is asked, nothing of it is logged
            log.info("sip2: a card or PIN the protocol cannot carry was refused unasked")
            return Patron(valid=False, pin_ok=None if job.pin is None else False)
        except Sip2Unavailable as exc:  # an unreadable terminal password
            await self._failed(exc)
            raise
        for attempt in (1, 2):
            connection = await self._connected()
            stale = connection.used
            try:
                frame = await self._exchange(connection, request, _ANSWER[request.command])
                patron = patron_from(frame, pin_sent=job.pin is not None)
            except GarbledFrame as exc:
                failure = Sip2Unavailable("garbled", str(exc))
                await self._failed(failure)
                raise failure from None
            except Sip2Unavailable as exc:
                # the server may close a connection that sat idle: ask once more on a new one
                retry = exc.reason == "closed" and stale and not exc.answer_started
                await self._failed(exc, retry=retry and attempt == 1)
                if retry and attempt == 1:
                    continue
                raise
            else:
                connection.used = True
                self._available()
                return patron
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, job: _Job) -> Request:
        request = patron(
            "63" if self.config.request == "patron_information" else "23",
            institution=self.config.institution_id,
            card=job.card,
            pin=job.pin,
            terminal_password=_secret(self.config.terminal_password, "terminal_password"),
            at=datetime.now(UTC),
        )
        if not job.card.strip():
            raise Sip2CodecError("empty card")
        encode(request, encoding=self.config.encoding)  # refuses what cannot be carried
        return request

    # -- the connection ------------------------------------------------------------------------

    async def _connected(self) -> _Connection:
        if self._connection is not None:
            return self._connection
        wait = self._retry_at - time.monotonic()
        if wait > 0 and self._problem is not None:
            raise Sip2Unavailable(
                "backoff", f"next try in {wait:.1f} s; last failure {self._problem}"
            )
        try:
            self._connection = await self._open()
        except Sip2Unavailable as exc:
            await self._failed(exc)
            raise
        except GarbledFrame as exc:
            failure = Sip2Unavailable("garbled", str(exc))
            await self._failed(failure)
            raise failure from None
        self.connects += 1
        return self._connection

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        ca = None if self.config.tls_ca is None else str(self.config.tls_ca)
        try:
            return ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise Sip2Unavailable("tls", f"cannot load the CA {ca}: {exc}") from None

    async def _open(self) -> _Connection:
        config = self.config
        context = self._ssl()
        where = f"{config.host}:{config.port}"
        try:
            async with asyncio.timeout(config.timeout):
                reader, writer = await asyncio.open_connection(
                    config.host,
                    config.port,
                    ssl=context,
                    server_hostname=(config.tls_server_name or config.host) if context else None,
                )
        except TimeoutError:
            raise Sip2Unavailable(
                "timeout", f"no connection to {where} within {config.timeout:g} s"
            ) from None
        except ssl.SSLError as exc:
            raise Sip2Unavailable("tls", f"TLS with {where} failed: {exc}") from None
        except OSError as exc:
            raise Sip2Unavailable("refused", f"cannot connect to {where}: {exc}") from None
        connection = _Connection(reader, writer, Decoder(encoding=config.encoding))
        try:
            if config.login_user is not None:
                request = login(
                    user=_secret(config.login_user, "login_user"),
                    password=_secret(config.login_password, "login_password"),
                    location=config.location_code,
                )
                answer = await self._exchange(connection, request, "94")
                if answer.fixed != "1":
                    raise Sip2Unavailable(
                        "login_refused", f"{where} refused the terminal's login (94 ok=0)"
                    )
            status = await self._exchange(connection, sc_status(), "98")
            if status.fixed[:1] != "Y":
                raise Sip2Unavailable("offline", f"{where} says it is offline (98 online=N)")
        except BaseException:
            await _close(connection)
            raise
        return connection

    async def _exchange(self, connection: _Connection, request: Request, expect: str) -> Frame:
        """Send ``request``, read its answer (resending once when the server asks, 96)."""
        sequence = connection.next_sequence() if self.config.checksums else None
        frame = encode(request, sequence=sequence, encoding=self.config.encoding)
        timeout = self.config.timeout
        try:
            async with asyncio.timeout(timeout):
                for _ in (1, 2):
                    connection.writer.write(frame)
                    await connection.writer.drain()
                    answer = await _read_frame(connection)
                    if answer.command == "96":
                        continue
                    if answer.command != expect:
                        raise GarbledFrame(f"expected {expect}, got {answer.command}")
                    if sequence is not None and answer.sequence not in (None, sequence):
                        raise GarbledFrame(
                            f"answer carries sequence {answer.sequence}, asked with {sequence}"
                        )
                    return answer
                raise GarbledFrame("the server asked for a resend twice (96)")
        except TimeoutError:
            raise Sip2Unavailable(
                "timeout",
                f"no answer to {request.command} within {timeout:g} s",
                answer_started=True,
            ) from None
        except (ConnectionError, ssl.SSLError) as exc:
            raise Sip2Unavailable("closed", f"connection lost: {exc}") from None

    # -- availability --------------------------------------------------------------------------

    async def _failed(self, exc: Sip2Unavailable, *, retry: bool = False) -> None:
        await self._drop()
        if retry:
            return
        self._delay = min(max(self._delay * 2, FIRST_BACKOFF), self.config.reconnect_max)
        self._retry_at = time.monotonic() + self._delay
        if self._problem is None:
            log.warning("sip2: the library system is unavailable: %s", exc)
            self._notify(available=False, reason=exc.reason)
        self._problem = exc

    def _available(self) -> None:
        self._delay = 0.0
        if self._problem is not None:
            log.info("sip2: the library system answers again")
            self._problem = None
            self._notify(available=True, reason="answers")

    def _notify(self, *, available: bool, reason: str) -> None:
        try:
            self.on_change(available, reason)
        except Exception:  # a listener costs only itself
            log.exception("sip2: the availability listener failed")

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await _close(connection)


_ANSWER = {"23": "24", "63": "64"}


async def _read_frame(connection: _Connection) -> Frame:
    while True:
        data = await connection.reader.read(4096)
        if not data:
            cut = connection.decoder.pending > 0
            raise Sip2Unavailable(
                "closed",
                "the server closed the connection" + (" mid-answer" if cut else ""),
                answer_started=cut,
            )
        frames = connection.decoder.feed(data)
        if len(frames) > 1:
            raise GarbledFrame(f"{len(frames)} answers to one request")
        if frames:
            return frames[0]


async def _close(connection: _Connection) -> None:
    connection.writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(1.0):
            await connection.writer.wait_closed()
