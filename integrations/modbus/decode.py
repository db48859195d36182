"""Registers to typed values and back. Pure functions, no I/O.

Byte orders name the bytes of a value from most significant (A) to least, in the order they
arrive on the wire (register 0 high byte, register 0 low byte, register 1 high byte, ...):

    32-bit   ABCD  big-endian (the Modbus norm)          64-bit  ABCDEFGH
             CDAB  word-swapped (low word first)                 GHEFCDAB
             BADC  bytes swapped inside each word                BADCFEHG
             DCBA  little-endian                                 HGFEDCBA

This follows Telegraf's modbus input. For 16-bit values ABCD and CDAB are big-endian, BADC
and DCBA byte-swapped. A sentinel is compared with the raw unsigned value of all the value's
registers (in value order) before scale and offset; NaN and infinity are no value either.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from integrations.modbus.register import ByteOrder, DataType, word_count

__all__ = ["NoValue", "Value", "decode", "encode"]

Value = float | int | bool | str


@dataclass(frozen=True, slots=True)
class NoValue:
    """A point that gave no value, and why (sentinel, NaN, not ASCII...)."""

    reason: str


_FORMAT = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}
_FLOATS = frozenset({DataType.FLOAT32, DataType.FLOAT64})


def _to_value_order(words: Sequence[int], order: ByteOrder) -> bytes:
    """The registers' bytes rearranged so the most significant byte comes first."""
    if order in (ByteOrder.CDAB, ByteOrder.DCBA):
        words = list(reversed(words))
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        raw = bytes(b for i in range(0, len(raw), 2) for b in (raw[i + 1], raw[i]))
    return raw


def _from_value_order(raw: bytes, order: ByteOrder) -> list[int]:
    """Inverse of ``_to_value_order``: big-endian value bytes to registers on the wire."""
    if order in (ByteOrder.BADC, ByteOrder.DCBA):
        raw = bytes(b for i in range(0, len(raw), 2) for b in (raw[i + 1], raw[i]))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if order in (ByteOrder.CDAB, ByteOrder.DCBA):
        words.reverse()
    return words


def _check_words(words: Sequence[int], dtype: DataType, length: int | None) -> None:
    expected = word_count(dtype, length)
    if len(words) != expected:
        raise ValueError(f"{dtype} needs {expected} register(s), got {len(words)}")
    for w in words:
        if not 0 <= int(w) <= 0xFFFF:
            raise ValueError(f"register value {w} is not in 0..65535")


def decode(  # noqa: PLR0911 - one return per kind of value
    words: Sequence[int],
    *,
    dtype: DataType,
    order: ByteOrder = ByteOrder.ABCD,
    scale: float = 1.0,
    offset: float = 0.0,
    sentinels: Collection[int] = (),
    bit: int | None = None,
    length: int | None = None,
) -> Value | NoValue:
    """The value held by ``words`` (exactly the point's registers, or one bit for BOOL)."""
    words = [int(w) for w in words]
    _check_words(words, dtype, length)
    if dtype is DataType.BOOL:
        return bool(words[0])
    if dtype is DataType.BITS:
        if bit is None or not 0 <= bit <= 15:
            raise ValueError(f"a bits point needs a bit in 0..15, got {bit}")
        return bool(words[0] >> bit & 1)
    raw = _to_value_order(words, order)
    if dtype is DataType.STRING:
        return _decode_string(raw)
    unsigned = int.from_bytes(raw, "big")
    if unsigned in sentinels:
        return NoValue(f"sentinel 0x{unsigned:0{len(raw) * 2}X} (not available)")
    number: float | int = struct.unpack(">" + _FORMAT[dtype], raw)[0]
    if dtype in _FLOATS:
        if math.isnan(number):
            return NoValue("NaN")
        if math.isinf(number):
            return NoValue("+inf" if number > 0 else "-inf")
    if scale == 1 and offset == 0:
        return number
    return number * scale + offset


def _decode_string(raw: bytes) -> str | NoValue:
    text = raw.rstrip(b"\x00 ")
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        return NoValue("string not ASCII")
    if not decoded.isprintable():
        return NoValue("string has control characters")
    return decoded


def encode(
    value: Value,
    *,
    dtype: DataType,
    order: ByteOrder = ByteOrder.ABCD,
    scale: float = 1.0,
    offset: float = 0.0,
    length: int | None = None,
) -> list[int]:
    """The registers that make ``value`` read back as ``value`` (the inverse of ``decode``)."""
    if dtype in (DataType.BOOL, DataType.BITS):
        if not isinstance(value, bool):
            raise ValueError(f"{dtype} takes true or false, got {value!r}")
        return [int(value)]
    if dtype is DataType.STRING:
        if not isinstance(value, str):
            raise ValueError(f"string takes text, got {value!r}")
        n = word_count(dtype, length) * 2
        data = value.encode("ascii")
        if len(data) > n:
            raise ValueError(f"{value!r} is longer than {n} characters")
        return _from_value_order(data.ljust(n, b"\x00"), order)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{dtype} takes a number, got {value!r}")
    if scale == 0:
        raise ValueError("scale 0 cannot be written")
    exact = isinstance(value, int) and scale == 1 and offset == 0
    raw_value = value if exact else (value - offset) / scale  # ints stay exact (64-bit)
    if dtype in _FLOATS:
        try:
            packed = struct.pack(">" + _FORMAT[dtype], float(raw_value))
        except OverflowError:
            raise ValueError(f"{value} is out of range for {dtype}") from None
    else:
        number = round(raw_value)
        try:
            packed = struct.pack(">" + _FORMAT[dtype], number)
        except struct.error:
            raise ValueError(f"{value} is out of range for {dtype}") from None
    return _from_value_order(packed, order)
