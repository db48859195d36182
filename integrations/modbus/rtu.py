"""The timing and the frame sizes of Modbus RTU on a serial line. Pure functions, no I/O.

A character on the line is a start bit, 8 data bits, a parity bit (none, even or odd) and one
or two stop bits: 11 bits in the Modbus standard's default 8E1 (and in 8N2). A frame is sent
as one burst of characters and ends with at least 3.5 character times of silence (t3.5); the
standard fixes t3.5 at 1.75 ms above 19200 baud ("Modbus over Serial Line", 2.5.1.1).

Frame sizes count every byte on the wire: unit id, function code, data and the two CRC bytes.
A read request is 8 bytes; its response is 5 bytes plus the data (2 per register, 1 per 8
bits), an exception response is 5 bytes.

``frame_length`` tells how long the frame that starts with some bytes is, from the function
code and, where the length varies, the byte count: the serial line simulator uses it to find
the frames in a byte stream, the way a Modbus device does besides the silence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openbranch.integrations.modbus.register import Table

__all__ = [
    "EXCEPTION_BYTES",
    "READ_REQUEST_BYTES",
    "Exchange",
    "bus_time",
    "character_bits",
    "character_time",
    "frame_length",
    "read_response_bytes",
    "silence",
]

READ_REQUEST_BYTES = 8  # unit, function, address (2), count (2), CRC (2)
EXCEPTION_BYTES = 5  # unit, function | 0x80, exception code, CRC (2)
_FIXED_SILENCE = 0.00175  # t3.5 above 19200 baud, seconds
_READS = frozenset({1, 2, 3, 4})


def character_bits(parity: str = "E", stopbits: int = 1) -> int:
    """Bits per character: start, 8 data bits, parity (unless ``N``), stop bits."""
    if parity not in ("N", "E", "O") or stopbits not in (1, 2):
        raise ValueError(f"no serial character with parity {parity!r} and {stopbits} stop bits")
    return 1 + 8 + (parity != "N") + stopbits


def character_time(baudrate: int, bits: int = 11) -> float:
    """Seconds one character takes on the line."""
    if baudrate <= 0:
        raise ValueError(f"baud rate {baudrate} is not above 0")
    return bits / baudrate


def silence(baudrate: int, bits: int = 11) -> float:
    """t3.5, the silence that ends a frame: 3.5 characters, and 1.75 ms above 19200 baud."""
    if baudrate > 19200:
        return _FIXED_SILENCE
    return 3.5 * character_time(baudrate, bits)


def read_response_bytes(table: Table, count: int) -> int:
    """Bytes of the response to a read of ``count`` registers (or bits) of ``table``."""
    if count < 1:
        raise ValueError(f"a read of {count} addresses")
    data = (count + 7) // 8 if table.is_bit else 2 * count
    return 5 + data


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer, in bytes on the wire."""

    request: int
    response: int

    @classmethod
    def read(cls, table: Table, count: int) -> Exchange:
        return cls(READ_REQUEST_BYTES, read_response_bytes(table, count))


def bus_time(exchanges: Iterable[Exchange], *, baudrate: int, bits: int = 11) -> float:
    """The least time the exchanges can take on one line: every byte of both frames, and the
    silence of t3.5 after each frame (before the answer and before the next request)."""
    char = character_time(baudrate, bits)
    gap = silence(baudrate, bits)
    return sum((e.request + e.response) * char + 2 * gap for e in exchanges)


# function code -> (bytes without the data, index of the byte count or None when fixed)
_RESPONSES: dict[int, tuple[int, int | None]] = {
    **dict.fromkeys((1, 2, 3, 4, 23), (5, 2)),
    **dict.fromkeys((5, 6, 15, 16), (8, None)),
    22: (10, None),
}
_REQUESTS: dict[int, tuple[int, int | None]] = {
    **dict.fromkeys((1, 2, 3, 4, 5, 6), (READ_REQUEST_BYTES, None)),
    **dict.fromkeys((15, 16), (9, 6)),
    22: (10, None),
    23: (13, 10),
}


def frame_length(prefix: bytes, *, from_device: bool) -> int | None:
    """The length of the RTU frame that starts with ``prefix`` (unit id first), or None when
    more bytes are needed to know. ``from_device``: a response (else a request).

    Knows the functions the gateway sends and the simulator answers (1-6, 15, 16, 22, 23) and
    exception responses; raises ValueError for another function code (a frame it cannot
    delimit: garbage, or a function nobody here uses).
    """
    if len(prefix) < 2:
        return None
    function = prefix[1]
    if from_device and function & 0x80:
        return EXCEPTION_BYTES
    layout = (_RESPONSES if from_device else _REQUESTS).get(function)
    if layout is None:
        raise ValueError(
            f"function code {function} ({prefix[:2].hex()}) is not one this line knows"
        )
    fixed, count_at = layout
    if count_at is None:
        return fixed
    return fixed + prefix[count_at] if len(prefix) > count_at else None
