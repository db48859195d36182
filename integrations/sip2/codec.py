"""SIP2 2.00 frames without I/O: requests to bytes, bytes to responses (sans-I/O, table-tested).

Only what a door needs: login (93/94), SC status (99/98), patron status (23/24) and patron
information (63/64), with the optional error detection (``AY`` sequence number, ``AZ``
checksum). The socket code in ``client.py`` feeds bytes to a ``Decoder`` and gets ``Frame``s.

Exceptions::

    Sip2CodecError          a value that cannot be put in a frame (delimiter, CR, too long)
    GarbledFrame            bytes that are not a valid answer: bad checksum, unknown command,
                            short fixed part, missing field terminator, too long
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

__all__ = [
    "FIXED_LENGTH",
    "MAX_FRAME",
    "Decoder",
    "Frame",
    "GarbledFrame",
    "Sip2CodecError",
    "checksum",
    "encode",
    "login",
    "patron",
    "sc_status",
    "transaction_date",
]

CR = b"\r"
DELIMITER = "|"
MAX_FRAME = 8192  # bytes up to the CR; a longer answer is garbled (and bounds the buffer)

#: response command -> length of its fixed part (after the two-character command id)
FIXED_LENGTH = {
    "94": 1,  # ok
    "96": 0,  # request SC resend
    # online, checkin, checkout, renewal, status update, offline (1 each), timeout (3),
    # retries (3), date (18), protocol version (4)
    "98": 6 + 3 + 3 + 18 + 4,
    "24": 14 + 3 + 18,  # patron status, language, date
    "64": 14 + 3 + 18 + 6 * 4,  # ... and six item counts
}


class Sip2CodecError(ValueError):
    """A value the protocol cannot carry (it would be read as another field)."""


class GarbledFrame(Exception):
    """Bytes from the server that are not a valid SIP2 answer."""


def checksum(prefix: bytes) -> str:
    """SIP2's checksum of every byte up to and including ``AZ``: the 16-bit two's complement
    of their sum, as four uppercase hex digits."""
    return f"{-sum(prefix) & 0xFFFF:04X}"


def transaction_date(at: datetime) -> str:
    """SIP2's 18-character date, in UTC: ``YYYYMMDD   ZHHMMSS``."""
    utc = at.astimezone(UTC)
    return f"{utc:%Y%m%d}   Z{utc:%H%M%S}"


def _field(code: str, value: str, encoding: str) -> bytes:
    if DELIMITER in value or "\r" in value or "\n" in value or "\x00" in value:
        raise Sip2CodecError(f"field {code} holds a delimiter, CR, LF or NUL")
    data = value.encode(encoding)
    if len(data) > 255:
        raise Sip2CodecError(f"field {code} is longer than 255 bytes")
    return code.encode("ascii") + data + DELIMITER.encode("ascii")


@dataclass(frozen=True, slots=True)
class Request:
    """A request before framing: command id, fixed part, identified fields in order."""

    command: str
    fixed: str
    fields: tuple[tuple[str, str], ...] = ()


def encode(request: Request, *, sequence: int | None = None, encoding: str = "utf-8") -> bytes:
    """The frame, CR included; with ``sequence`` (0-9) it ends in ``AY<n>AZ<checksum>``."""
    body = bytearray((request.command + request.fixed).encode(encoding))
    for code, value in request.fields:
        body += _field(code, value, encoding)
    if sequence is not None:
        if not 0 <= sequence <= 9:
            raise Sip2CodecError("a sequence number is one digit, 0-9")
        body += f"AY{sequence}AZ".encode("ascii")
        body += checksum(bytes(body)).encode("ascii")
    return bytes(body) + CR


def login(*, user: str, password: str, location: str | None) -> Request:
    """93: the terminal's login (user id and password algorithms 0: not encrypted)."""
    fields = [("CN", user), ("CO", password)]
    if location is not None:
        fields.append(("CP", location))
    return Request("93", "00", tuple(fields))


def sc_status(*, max_print_width: int = 80) -> Request:
    """99: the terminal is OK (status 0), speaks 2.00."""
    return Request("99", f"0{max_print_width:03d}2.00")


def patron(
    command: Literal["23", "63"],
    *,
    institution: str,
    card: str,
    pin: str | None,
    terminal_password: str,
    at: datetime,
) -> Request:
    """23 (patron status: AD is required, empty when no PIN was entered) or 63 (patron
    information without an item summary: AD only when a PIN was entered)."""
    fields = [("AO", institution), ("AA", card), ("AC", terminal_password)]
    if pin is not None or command == "23":
        fields.append(("AD", pin or ""))
    fixed = "000" + transaction_date(at) + (" " * 10 if command == "63" else "")
    return Request(command, fixed, tuple(fields))


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded answer: command id, fixed part, identified fields (repeats kept in order)
    and the sequence number when the frame carried one."""

    command: str
    fixed: str
    fields: tuple[tuple[str, str], ...]
    sequence: int | None = None

    def get(self, code: str) -> str | None:
        """The first value of field ``code``, or None when absent."""
        return next((value for c, value in self.fields if c == code), None)

    def all(self, code: str) -> list[str]:
        return [value for c, value in self.fields if c == code]


def _strip_error_detection(body: bytes) -> tuple[bytes, int | None]:
    """The body without ``AY<n>AZ<xxxx>``, verified; GarbledFrame on a bad checksum."""
    at = body.rfind(b"AZ")
    if at < 0 or len(body) - at != 6:
        return body, None
    digits = body[at + 2 :]
    try:
        value = int(digits.decode("ascii"), 16)
    except ValueError:
        raise GarbledFrame("checksum is not four hex digits") from None
    if (sum(body[: at + 2]) + value) & 0xFFFF != 0:
        raise GarbledFrame(f"checksum {digits.decode('ascii')} does not match the frame")
    rest = body[:at]
    if len(rest) >= 3 and rest[-3:-1] == b"AY" and rest[-1:].isdigit():
        return rest[:-3], int(rest[-1:])
    return rest, None


def decode(frame: bytes, *, encoding: str = "utf-8") -> Frame:
    """One frame (its CR removed) as a ``Frame``; GarbledFrame when it is not one."""
    body, sequence = _strip_error_detection(frame)
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:
        raise GarbledFrame(f"not {encoding} text") from None
    command = text[:2]
    if command not in FIXED_LENGTH:
        raise GarbledFrame(f"unexpected command {command!r}")
    end = 2 + FIXED_LENGTH[command]
    if len(text) < end:
        raise GarbledFrame(f"{command}: fixed part cut short ({len(text) - 2} of {end - 2})")
    fixed, rest = text[2:end], text[end:]
    fields = []
    while rest:
        stop = rest.find(DELIMITER)
        if stop < 2:
            raise GarbledFrame(f"{command}: a field without its code or terminator")
        fields.append((rest[:2], rest[2:stop]))
        rest = rest[stop + 1 :]
    return Frame(command, fixed, tuple(fields), sequence)


class Decoder:
    """Bytes in, frames out: frames end at CR (an LF after it, which some servers send, is
    skipped). A frame longer than ``MAX_FRAME`` is garbled."""

    def __init__(self, *, encoding: str = "utf-8") -> None:
        self._encoding = encoding
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that are not a whole frame yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while (end := self._buffer.find(CR)) >= 0:
            raw = bytes(self._buffer[:end]).lstrip(b"\n")
            del self._buffer[: end + 1]
            frames.append(decode(raw, encoding=self._encoding))
        if len(self._buffer) > MAX_FRAME:
            raise GarbledFrame(f"no CR within {MAX_FRAME} bytes")
        return frames
