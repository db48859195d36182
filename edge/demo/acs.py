"""The demo's library system: a small SIP2 2.00 ACS on loopback, over the real protocol.

It answers login (93 -> 94), SC status (99 -> 98), patron status (23 -> 24) and patron
information (63 -> 64) from ``DEMO_PATRONS``, with the Danish extension fields PB (birth
date) and PC (patron type), echoing the request's sequence number and adding a checksum
(AY/AZ) when the request had them. The gateway's SIP2 client (``integrations/sip2``, its
own codec) talks to it exactly as to a library system. ``online = False`` makes it answer
nothing (connections are refused): the library system is down.

Only for the demo: it knows nine made-up patrons and nothing else of SIP2.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime

__all__ = ["DEMO_PATRONS", "DemoAcs", "DemoPatron"]

log = logging.getLogger(__name__)

_DETECTION = re.compile(r"AY(\d)AZ[0-9A-Fa-f]{4}$")  # error detection at a request's end

FIXED = {"93": 2, "99": 8, "23": 21, "63": 31}  # request fixed-part lengths after the command


@dataclass(frozen=True, slots=True)
class DemoPatron:
    pin: str
    status: str = " " * 14  # Y at 0: charge denied, 4: card lost, 6: too many overdue
    birth: str | None = None  # PB, YYYYMMDD
    category: str = "voksen"  # PC


def _flags(*at: int) -> str:
    return "".join("Y" if i in at else " " for i in range(14))


#: card number -> patron (made up; the demo's reader presents these)
DEMO_PATRONS = {
    "4000000000011": DemoPatron("1111", birth="19800312"),
    "4000000000029": DemoPatron("2222", birth="19671102"),
    "4000000000037": DemoPatron("3333", birth="19920630"),
    "4000000000045": DemoPatron("4444", birth="19550921"),
    "4000000000052": DemoPatron("5555", birth="20010115"),
    "4000000000060": DemoPatron("6666", birth="19881224"),
    "4000000000078": DemoPatron("7777", status=_flags(4), birth="19750505"),  # card lost
    "4000000000086": DemoPatron("8888", birth="20140402", category="barn"),  # 12 years old
    "4000000000094": DemoPatron("9999", status=_flags(0), birth="19900909"),  # charge denied
}


def _checksum(body: bytes) -> str:
    return f"{-sum(body) & 0xFFFF:04X}"


def _fields(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split("|"):
        if len(part) >= 2:
            out.setdefault(part[:2], part[2:])
    return out


class DemoAcs:
    """The demo ACS on ``127.0.0.1:port`` (0: a free port, kept across ``stop``/``start``)."""

    def __init__(self, *, institution: str = "DK-DEMO", port: int = 0) -> None:
        self.institution = institution
        self.port = port
        self.answered = 0
        self._server: asyncio.Server | None = None

    @property
    def online(self) -> bool:
        return self._server is not None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                server.close_clients()  # type: ignore[attr-defined]  # Python 3.13+
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while self._server is not None:
                try:
                    frame = await reader.readuntil(b"\r")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                answer = self.answer(frame.rstrip(b"\r\n").decode("utf-8", "replace"))
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                self.answered += 1
        except (asyncio.LimitOverrunError, ConnectionError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def answer(self, request: str) -> bytes | None:
        """The answer frame to one request frame (None: not a request this ACS knows)."""
        sequence = None
        if (detection := _DETECTION.search(request)) is not None:
            sequence, request = detection.group(1), request[: detection.start()]
        command = request[:2]
        if command not in FIXED:
            return None
        fields = _fields(request[2 + FIXED[command] :])
        now = datetime.now().strftime("%Y%m%d    %H%M%S")
        if command == "93":
            body = "941"
        elif command == "99":
            body = (
                f"98YYYYNN010003{now}2.00AO{self.institution}|AMOpenBranch demo ACS|"
                "BXYYYYYYYYYYYYYYYY|"
            )
        else:
            body = self._patron(command, fields, now)
        if sequence is not None:
            body += f"AY{sequence}AZ"
            body += _checksum(body.encode())
        return (body + "\r").encode()

    def _patron(self, command: str, fields: dict[str, str], now: str) -> str:
        card, pin = fields.get("AA", ""), fields.get("AD")
        patron = DEMO_PATRONS.get(card)
        status = patron.status if patron else " " * 14
        head = f"{'24' if command == '23' else '64'}{status}000{now}"
        if command == "63":
            head += "0000" * 6
        parts = [f"AO{self.institution}", f"AA{card}", "AEDemo patron"]
        parts.append(f"BL{'Y' if patron else 'N'}")
        if pin is not None and patron is not None:
            parts.append(f"CQ{'Y' if pin == patron.pin else 'N'}")
        if patron is not None:
            if patron.birth:
                parts.append(f"PB{patron.birth}")
            parts.append(f"PC{patron.category}")
        return head + "|".join(parts) + "|"
