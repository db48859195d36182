"""The vocabulary of Modbus data: tables, data types and word/byte orders.

Shared by the profile model, the planner, the decoder and the simulator. Pure data, no I/O.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BIT_TABLES", "ByteOrder", "DataType", "Table", "word_count"]


class Table(StrEnum):
    """The four Modbus data tables."""

    COIL = "coil"  # read/write bits, FC 1 / 5 / 15
    DISCRETE_INPUT = "discrete_input"  # read-only bits, FC 2
    HOLDING = "holding"  # read/write 16-bit registers, FC 3 / 6 / 16
    INPUT = "input"  # read-only 16-bit registers, FC 4

    @property
    def is_bit(self) -> bool:
        return self in BIT_TABLES

    @property
    def writable(self) -> bool:
        return self in (Table.COIL, Table.HOLDING)


BIT_TABLES = frozenset({Table.COIL, Table.DISCRETE_INPUT})


class DataType(StrEnum):
    """How a point's registers are to be read."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"  # `length` registers, two ASCII characters each, NUL/space padded
    BITS = "bits"  # one bit (`bit` 0..15) of a 16-bit register -> bool
    BOOL = "bool"  # a coil or discrete input


class ByteOrder(StrEnum):
    """Order of the bytes of a multi-register value, A being the most significant byte.

    ABCD: big-endian words, big-endian bytes (the Modbus norm);
    CDAB: word-swapped (little-endian words, big-endian bytes; many energy meters);
    BADC: byte-swapped inside each word;
    DCBA: fully little-endian.
    For 64-bit values the same pattern extends over four words.
    """

    ABCD = "ABCD"
    DCBA = "DCBA"
    BADC = "BADC"
    CDAB = "CDAB"


_WORDS = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.BITS: 1,
    DataType.BOOL: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT64: 4,
}


def word_count(dtype: DataType, length: int | None = None) -> int:
    """Registers (or bits, for BOOL) a value of `dtype` occupies; strings need `length`."""
    if dtype is DataType.STRING:
        if length is None or length < 1:
            raise ValueError("a string point needs a length of at least 1 register")
        return length
    return _WORDS[dtype]
