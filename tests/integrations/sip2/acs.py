"""The library system's side for the SIP2 tests and the bench: pysip2's ACS server (a
third-party implementation, so the client's codec meets another on the wire) answering from a
small patron table, and a TCP proxy that can corrupt, cut or encrypt what passes through it.

The proxy is the one stand-in: a server that garbles or cuts its answers cannot be had from a
correct server, so the faults are made on the wire between the real server and the client; as
a TLS terminator it is what real branches put in front of SIP2 (stunnel and the like).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from pysip2 import (
    LOGIN,
    PATRON_INFORMATION,
    PATRON_STATUS,
    LoginRequest,
    LoginResponse,
    PatronInformationRequest,
    PatronInformationResponse,
    PatronStatusRequest,
    PatronStatusResponse,
    RequestContext,
    SIP2Server,
)

INSTITUTION = "DK-761500"
LOGIN_USER = "gw-hovedbib"
LOGIN_PASSWORD = "terminal-secret"
ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Card:
    pin: str
    name: str
    status: str = " " * 14  # SIP2 patron status, 14 Y/space
    fee: str | None = None


def status(*flags: int) -> str:
    chars = [" "] * 14
    for flag in flags:
        chars[flag] = "Y"
    return "".join(chars)


#: card number -> patron; the numbers are searched for in written data by the privacy tests
PATRONS = {
    "2200000000017": Card(pin="1234", name="Karen Blixen"),
    "2200000000025": Card(pin="4321", name="Søren Kierkegaard", status=status(4)),  # card lost
    "2200000000033": Card(pin="1111", name="H.C. Andersen", status=status(0)),  # charge denied
    "2200000000041": Card(pin="2222", name="Tove Ditlevsen", status=status(6)),  # overdue
    "2200000000058": Card(pin="3333", name="Inger Christensen", fee="150.00"),
}


@dataclass
class Acs:
    """pysip2's SIP2Server with handlers over ``PATRONS`` (run by ``AcsProcess``).

    ``delay`` slows every patron answer; ``login`` None accepts any terminal without login."""

    encoding: str = "utf-8"
    login: tuple[str, str] | None = (LOGIN_USER, LOGIN_PASSWORD)
    delay: float = 0.0
    idle_timeout: float | None = None  # the server closes a connection idle this long
    asked: list[str] = field(default_factory=list)  # command ids answered, in order
    port: int = 0

    def _server(self) -> SIP2Server:
        server = SIP2Server(
            encoding=self.encoding,
            institution_id=INSTITUTION,
            login_required=self.login is not None,
            idle_timeout=self.idle_timeout,
        )

        @server.route(LOGIN)
        def login(
            request: LoginRequest, _ctx: RequestContext[LoginRequest, LoginResponse]
        ) -> LoginResponse:
            self.asked.append("93")
            ok = (request.login_user_id, request.login_password) == self.login
            return LoginResponse(ok="1" if ok else "0")

        def answer(card: str, pin: str | None) -> dict[str, Any]:
            patron = PATRONS.get(card)
            if patron is None:
                return {"patron_status": " " * 14, "personal_name": "", "valid_patron": "N"}
            fields: dict[str, Any] = {
                "patron_status": patron.status,
                "personal_name": patron.name,
                "valid_patron": "Y",
                "screen_message": (f"Hej {patron.name}",),
            }
            if pin:
                fields["valid_patron_password"] = "Y" if pin == patron.pin else "N"
            if patron.fee is not None:
                fields["fee_amount"] = patron.fee
                fields["currency_type"] = "DKK"
            return fields

        @server.route(PATRON_INFORMATION)
        async def information(
            request: PatronInformationRequest,
            ctx: RequestContext[PatronInformationRequest, PatronInformationResponse],
        ) -> PatronInformationResponse:
            self.asked.append("63")
            if self.delay:
                await anyio.sleep(self.delay)
            return PatronInformationResponse(
                language="000",
                transaction_date=ctx.now_18(),
                hold_items_count="0000",
                overdue_items_count="0000",
                charged_items_count="0000",
                fine_items_count="0000",
                recall_items_count="0000",
                unavailable_holds_count="0000",
                institution_id=request.institution_id,
                patron_identifier=request.patron_identifier,
                **answer(request.patron_identifier, request.patron_password),
            )

        @server.route(PATRON_STATUS)
        async def patron_status(
            request: PatronStatusRequest,
            ctx: RequestContext[PatronStatusRequest, PatronStatusResponse],
        ) -> PatronStatusResponse:
            self.asked.append("23")
            if self.delay:
                await anyio.sleep(self.delay)
            return PatronStatusResponse(
                language="000",
                transaction_date=ctx.now_18(),
                institution_id=request.institution_id,
                patron_identifier=request.patron_identifier,
                **answer(request.patron_identifier, request.patron_password),
            )

        return server


@contextlib.contextmanager
def running(acs: AcsProcess) -> Iterator[AcsProcess]:
    acs.start()
    try:
        yield acs
    finally:
        acs.stop()


Fault = Callable[[bytes], bytes | None]  # an answer frame -> what to send (None: cut here)


@dataclass
class Proxy:
    """Client <-> proxy <-> ACS; ``fault`` rewrites each whole answer frame from the server
    (returning None closes the client's connection after half of the frame).

    ``tls``: the proxy is a TLS terminator in front of the plain-TCP server."""

    target: int
    fault: Fault | None = None
    request_fault: Fault | None = None  # the same for each whole request frame from the client
    tls: ssl.SSLContext | None = None
    answers: list[bytes] = field(default_factory=list)  # server frames as received
    requests: int = 0  # client frames passed on
    port: int = 0
    _server: asyncio.Server | None = None
    _clients: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._clients:
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def upstream() -> None:
            buffer = b""
            while data := await reader.read(4096):
                buffer += data
                while b"\r" in buffer:
                    frame, buffer = buffer.split(b"\r", 1)
                    frame += b"\r"
                    self.requests += 1
                    fault = self.request_fault
                    up_writer.write(frame if fault is None else fault(frame) or b"")
                    await up_writer.drain()
            up_writer.close()

        async def downstream() -> None:
            buffer = b""
            while data := await up_reader.read(4096):
                buffer += data
                while b"\r" in buffer:
                    frame, buffer = buffer.split(b"\r", 1)
                    frame += b"\r"
                    self.answers.append(frame)
                    sent = frame if self.fault is None else self.fault(frame)
                    if sent is None:
                        writer.write(frame[: len(frame) // 2])
                        await writer.drain()
                        writer.close()
                        return
                    writer.write(sent)
                    await writer.drain()
            writer.close()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await w.wait_closed()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 and its key, made with the openssl CLI."""
    cert, key = folder / "acs.pem", folder / "acs.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class AcsProcess:
    """The same ACS in a process of its own, so that a restart is a real one: pysip2's
    ``SIP2Server.start`` leaves its listening socket open when it stops (the port stays taken
    and the kernel keeps accepting connections nobody answers), a process's end closes it."""

    def __init__(self, *, delay: float = 0.0, idle_timeout: float = 0.0) -> None:
        self.port = 0
        self.delay = delay
        self.idle_timeout = idle_timeout
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> int:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integrations.sip2.acs",
                str(self.port),
                str(self.delay),
                str(self.idle_timeout),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())
        return self.port

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            assert self._process.stdout is not None
            self._process.stdout.close()
            self._process = None


async def _serve(port: int, delay: float, idle_timeout: float) -> None:
    acs = Acs(port=port, delay=delay, idle_timeout=idle_timeout or None)
    async with acs._server().start(port=port) as bound:
        print(bound, flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(_serve, int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]))
