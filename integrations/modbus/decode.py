"""Registers to typed values and back. Pure functions, no I/O.

Byte orders (Telegraf's modbus input names) list the bytes of a value, A being the most
significant, in the order they arrive on the wire: register 0 high byte, register 0 low byte,
register 1 high byte, and so on.

    order   16-bit   32-bit   64-bit      meaning
    ABCD    AB       ABCD     ABCDEFGH    big-endian, the Modbus norm
    CDAB    AB       CDAB     GHEFCDAB    word-swapped: least significant register first
    BADC    BA       BADC     BADCFEHG    bytes swapped inside each register
    DCBA    BA       DCBA     HGFEDCBA    fully little-endian

So for 64-bit values CDAB reads registers w0 w1 w2 w3 as the value w3 w2 w1 w0, and DCBA
also swaps the two bytes of each register. Strings are a run of registers, never reordered:
ABCD and CDAB put the first character in the high byte of each register, BADC and DCBA in the
low byte. BITS numbers the bits of the register value (0 = least significant); byte order does
not apply to BITS or BOOL.

A sentinel is compared with the raw unsigned value of all the point's registers (in value
order: 0x80000000 is the "not available" of an int32 whatever the byte order) before scale and
offset. Floats that are NaN or infinite are no value either.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from openbranch.integrations.modbus.register import ByteOrder, DataType, word_count

__all__ = ["NoValue", "Value", "decode", "encode"]

Value: TypeAlias = float | int | bool | str


@dataclass(frozen=True, slots=True)
class NoValue:
    """A point that gave no value, and why ("sentinel 0xFFFF (not available)", "NaN", ...)."""

    reason: str


_FORMAT = {  # struct codes, big-endian
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
_SIGNED = frozenset({DataType.INT16, DataType.INT32, DataType.INT64})
_WORD_SWAPPED = frozenset({ByteOrder.CDAB, ByteOrder.DCBA})
_BYTE_SWAPPED = frozenset({ByteOrder.BADC, ByteOrder.DCBA})
_FLOAT32_MAX: float = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]  # 3.4028235e38


def _int_range(dtype: DataType) -> tuple[int, int]:
    bits = 16 * word_count(dtype)
    if dtype in _SIGNED:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _swap_pairs(raw: bytes) -> bytes:
    """Swap the two bytes of every register."""
    return bytes(b for i in range(0, len(raw), 2) for b in (raw[i + 1], raw[i]))


def _wire_bytes(words: Sequence[int]) -> bytes:
    return b"".join(w.to_bytes(2, "big") for w in words)


def _wire_words(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def _to_value_bytes(words: Sequence[int], order: ByteOrder) -> bytes:
    """A number's registers as its big-endian bytes (most significant first)."""
    ordered = list(reversed(words)) if order in _WORD_SWAPPED else list(words)
    raw = _wire_bytes(ordered)
    return _swap_pairs(raw) if order in _BYTE_SWAPPED else raw


def _from_value_bytes(raw: bytes, order: ByteOrder) -> list[int]:
    """Inverse of ``_to_value_bytes``: a number's big-endian bytes as registers on the wire."""
    words = _wire_words(_swap_pairs(raw) if order in _BYTE_SWAPPED else raw)
    return words[::-1] if order in _WORD_SWAPPED else words


def _checked_words(words: Sequence[int], dtype: DataType, length: int | None) -> list[int]:
    expected = word_count(dtype, length)
    if len(words) != expected:
        raise ValueError(f"{dtype} needs {expected} register(s), got {len(words)}")
    top = 1 if dtype is DataType.BOOL else 0xFFFF
    for w in words:
        if not isinstance(w, int) or not 0 <= w <= top:
            raise ValueError(f"{dtype} register value {w!r} is not an integer in 0..{top}")
    return [int(w) for w in words]


def decode(
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
    """The value held by ``words``: exactly the point's registers (for BOOL, its one bit).

    Integers come back as ``int`` when ``scale`` is 1 and ``offset`` 0, else as
    ``raw * scale + offset`` in a ``float``. Raises ValueError for a wrong number of words, a
    word outside 0..65535 (0..1 for BOOL), or a BITS point without a ``bit`` in 0..15.
    """
    checked = _checked_words(words, dtype, length)
    if dtype is DataType.BOOL:
        return bool(checked[0])
    if dtype is DataType.BITS:
        if bit is None or not 0 <= bit <= 15:
            raise ValueError(f"a bits point needs a bit in 0..15, got {bit}")
        return bool(checked[0] >> bit & 1)
    if dtype is DataType.STRING:
        return _decode_string(checked, order)
    return _decode_number(_to_value_bytes(checked, order), dtype, scale, offset, sentinels)


def _decode_number(
    raw: bytes, dtype: DataType, scale: float, offset: float, sentinels: Collection[int]
) -> float | int | NoValue:
    unsigned = int.from_bytes(raw, "big")
    if unsigned in sentinels:
        return NoValue(f"sentinel 0x{unsigned:0{len(raw) * 2}X} (not available)")
    number: float | int = struct.unpack(">" + _FORMAT[dtype], raw)[0]
    if math.isnan(number):
        return NoValue("NaN")
    if math.isinf(number):
        return NoValue("+inf" if number > 0 else "-inf")
    if scale == 1 and offset == 0:
        return number
    return float(number) * scale + offset


def _string_bytes(words: Sequence[int], order: ByteOrder) -> bytes:
    raw = _wire_bytes(words)
    return _swap_pairs(raw) if order in _BYTE_SWAPPED else raw


def _decode_string(words: Sequence[int], order: ByteOrder) -> str | NoValue:
    text = _string_bytes(words, order).rstrip(b"\x00 ")
    if not text.isascii():
        return NoValue("string not ASCII")
    decoded = text.decode("ascii")
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
    """The registers that ``decode`` reads back as ``value`` (for writes).

    Numbers are written as ``(value - offset) / scale``, rounded half to even for integer
    types. BOOL and BITS give the bit alone, ``[0]`` or ``[1]``: placing one bit in a register
    is a read-modify-write for the caller. Strings are padded with NULs to ``length``
    registers. Raises ValueError, naming the value and the type's range, for a value the type
    cannot hold (out of range, NaN, infinite, not ASCII, too long, or of the wrong kind).
    """
    if dtype in (DataType.BOOL, DataType.BITS):
        if not isinstance(value, bool):
            raise ValueError(f"{dtype} takes true or false, got {value!r}")
        return [int(value)]
    if dtype is DataType.STRING:
        return _encode_string(value, order, word_count(dtype, length))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{dtype} takes a number, got {value!r}")
    if scale == 0:
        raise ValueError("a point with scale 0 cannot be written")
    exact = isinstance(value, int) and scale == 1 and offset == 0  # int64 stays exact
    raw = value if exact else (value - offset) / scale
    shown = f"{value}" if raw == value else f"{value} (raw {raw})"
    if not math.isfinite(raw):
        raise ValueError(f"{shown} cannot be written as {dtype}: not a finite number")
    if dtype in _FLOATS:
        if dtype is DataType.FLOAT32 and abs(raw) > _FLOAT32_MAX:
            raise ValueError(f"{shown} is out of range for {dtype} (±{_FLOAT32_MAX:.8g})")
        return _from_value_bytes(struct.pack(">" + _FORMAT[dtype], raw), order)
    lo, hi = _int_range(dtype)
    number = round(raw)
    if not lo <= number <= hi:
        raise ValueError(f"{shown} is out of range for {dtype} ({lo}..{hi})")
    return _from_value_bytes(struct.pack(">" + _FORMAT[dtype], number), order)


def _encode_string(value: Value, order: ByteOrder, registers: int) -> list[int]:
    if not isinstance(value, str):
        raise ValueError(f"string takes text, got {value!r}")
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"string takes printable ASCII text, got {value!r}")
    capacity = registers * 2
    if len(value) > capacity:
        raise ValueError(f"{value!r} is longer than {capacity} characters ({registers} registers)")
    raw = value.encode("ascii").ljust(capacity, b"\x00")
    return _wire_words(_swap_pairs(raw) if order in _BYTE_SWAPPED else raw)
