"""A TCP proxy in front of a database that can misbehave on demand (asyncio, no HTTP library).

Modes (``mode``, changed at any time; each new connection and each forwarded chunk reads it):

- ``pass``: forward both ways.
- ``slow``: forward, but hold every chunk ``delay`` seconds first (a congested uplink).
- ``cut``: accept, read the request, and close the connection without an answer (a link that
  drops mid-request: the client sees a reset or an empty answer).
- ``status``: answer every HTTP request itself with ``status`` (503, 429, ...) and a
  ``Retry-After`` header, without reaching the database (a load balancer in front of a
  database that refuses writes).

``cut_all()`` closes every open connection now (so a client must connect again: with the
gateway's descriptors exhausted, that is what fails). Counters say how often each happened.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

__all__ = ["FaultyProxy", "ProxyStats"]

_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass(slots=True)
class ProxyStats:
    connections: int = 0
    forwarded_chunks: int = 0
    cut: int = 0
    refused: int = 0  # requests answered with ``status``


class FaultyProxy:
    def __init__(self, *, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.host = host
        self.port = 0
        self.mode = "pass"
        self.delay = 0.5
        self.status = 503
        self.retry_after = 1.0
        self.stats = ProxyStats()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.cut_all()
            await self._server.wait_closed()
            self._server = None

    def set(self, mode: str, **settings: float) -> None:
        self.mode = mode
        for name, value in settings.items():
            setattr(self, name, int(value) if name == "status" else value)

    def cut_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self._writers.add(writer)
        try:
            if self.mode in ("cut", "status"):
                await self._answer_itself(reader, writer)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                return  # the database is down: the client sees the connection close
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                up_writer.transport.abort()
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                if self.mode == "slow":
                    await asyncio.sleep(self.delay)
                elif self.mode in ("cut", "status"):
                    self.stats.cut += 1
                    return  # switched while connected: drop the link
                writer.write(chunk)
                await writer.drain()
                self.stats.forwarded_chunks += 1
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def _answer_itself(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
            while True:  # keep-alive: one answer per request
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                await reader.readexactly(length)
                if self.mode == "cut":
                    self.stats.cut += 1
                    return
                self.stats.refused += 1
                body = b'{"error":"injected by the soak: the database refuses writes"}'
                reason = _REASONS.get(self.status, "Error")
                writer.write(
                    f"HTTP/1.1 {self.status} {reason}\r\nContent-Type: application/json\r\n"
                    f"Retry-After: {self.retry_after:g}\r\nContent-Length: {len(body)}\r\n"
                    "\r\n".encode()
                    + body
                )
                await writer.drain()
                if self.mode not in ("cut", "status"):
                    return  # back to forwarding: the client connects again
