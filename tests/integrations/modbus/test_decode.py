"""Register words in, values out: every type in every byte order, sentinels, NaN and infinity.

Expected words are written as literal hex, so an implementation that mixes up an order fails.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from integrations.modbus.decode import NoValue, decode, encode
from integrations.modbus.register import ByteOrder, DataType

A, B, C, D = ByteOrder.ABCD, ByteOrder.BADC, ByteOrder.CDAB, ByteOrder.DCBA
T = DataType

# (words, dtype, order, expected). 0x12345678 = 305419896; -123456789 = 0xF8A432EB.
VALUES: list[tuple[list[int], DataType, ByteOrder, Any]] = [
    # 16-bit
    ([0x1234], T.UINT16, A, 0x1234),
    ([0x1234], T.UINT16, C, 0x1234),
    ([0x3412], T.UINT16, B, 0x1234),
    ([0x3412], T.UINT16, D, 0x1234),
    ([0xFF85], T.INT16, A, -123),
    ([0x85FF], T.INT16, B, -123),
    ([0x8000], T.INT16, A, -32768),
    ([0x7FFF], T.INT16, A, 32767),
    ([0xFFFF], T.UINT16, A, 65535),
    # 32-bit integers
    ([0x1234, 0x5678], T.UINT32, A, 305419896),
    ([0x5678, 0x1234], T.UINT32, C, 305419896),
    ([0x3412, 0x7856], T.UINT32, B, 305419896),
    ([0x7856, 0x3412], T.UINT32, D, 305419896),
    ([0xF8A4, 0x32EB], T.INT32, A, -123456789),
    ([0x32EB, 0xF8A4], T.INT32, C, -123456789),
    ([0xA4F8, 0xEB32], T.INT32, B, -123456789),
    ([0xEB32, 0xA4F8], T.INT32, D, -123456789),
    # float32: 230.5 = 0x43668000
    ([0x4366, 0x8000], T.FLOAT32, A, 230.5),
    ([0x8000, 0x4366], T.FLOAT32, C, 230.5),
    ([0x6643, 0x0080], T.FLOAT32, B, 230.5),
    ([0x0080, 0x6643], T.FLOAT32, D, 230.5),
    # 64-bit: 0x0102030405060708 = 72623859790382856
    ([0x0102, 0x0304, 0x0506, 0x0708], T.UINT64, A, 72623859790382856),
    ([0x0708, 0x0506, 0x0304, 0x0102], T.UINT64, C, 72623859790382856),
    ([0x0201, 0x0403, 0x0605, 0x0807], T.UINT64, B, 72623859790382856),
    ([0x0807, 0x0605, 0x0403, 0x0201], T.UINT64, D, 72623859790382856),
    ([0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], T.INT64, A, -2),
    ([0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF], T.INT64, C, -2),
    ([0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF], T.INT64, B, -2),
    ([0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF], T.INT64, D, -2),
    # float64: 12345.6789 = 0x40C81CD6E631F8A1
    ([0x40C8, 0x1CD6, 0xE631, 0xF8A1], T.FLOAT64, A, 12345.6789),
    ([0xF8A1, 0xE631, 0x1CD6, 0x40C8], T.FLOAT64, C, 12345.6789),
    ([0xC840, 0xD61C, 0x31E6, 0xA1F8], T.FLOAT64, B, 12345.6789),
    ([0xA1F8, 0x31E6, 0xD61C, 0xC840], T.FLOAT64, D, 12345.6789),
]


@pytest.mark.parametrize(
    ("words", "dtype", "order", "expected"),
    VALUES,
    ids=[f"{d}-{o}-{v}" for _, d, o, v in VALUES],
)
def test_decode_every_type_and_order(
    words: list[int], dtype: DataType, order: ByteOrder, expected: Any
) -> None:
    value = decode(words, dtype=dtype, order=order)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("words", "dtype", "order", "expected"),
    VALUES,
    ids=[f"{d}-{o}-{v}" for _, d, o, v in VALUES],
)
def test_encode_is_the_inverse(
    words: list[int], dtype: DataType, order: ByteOrder, expected: Any
) -> None:
    assert encode(expected, dtype=dtype, order=order) == words


NAN32 = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
INF32 = list(struct.unpack(">HH", struct.pack(">f", math.inf)))
NINF64 = list(struct.unpack(">HHHH", struct.pack(">d", -math.inf)))
NAN64 = list(struct.unpack(">HHHH", struct.pack(">d", math.nan)))


@pytest.mark.parametrize(
    ("words", "dtype", "order", "kwargs", "reason"),
    [
        ([0xFFFF], T.UINT16, A, {"sentinels": [0xFFFF]}, "sentinel 0xFFFF (not available)"),
        ([0x8000], T.INT16, A, {"sentinels": [0x8000]}, "sentinel 0x8000 (not available)"),
        ([0xFFFF, 0xFFFF], T.UINT32, C, {"sentinels": [0xFFFFFFFF]}, "sentinel 0xFFFFFFFF"),
        ([0x0000, 0x8000], T.INT32, C, {"sentinels": [0x80000000]}, "sentinel 0x80000000"),
        ([0xFFFF], T.UINT16, A, {"sentinels": [0xFFFF], "scale": 0.1}, "sentinel"),
        ([0x7FC0, 0x0000], T.FLOAT32, A, {"sentinels": [0x7FC00000]}, "sentinel 0x7FC00000"),
        (NAN32, T.FLOAT32, A, {}, "NaN"),
        (NAN32[::-1], T.FLOAT32, C, {}, "NaN"),
        (INF32, T.FLOAT32, A, {}, "+inf"),
        ([0xFF80, 0x0000], T.FLOAT32, A, {}, "-inf"),
        (NAN64, T.FLOAT64, A, {}, "NaN"),
        (NINF64, T.FLOAT64, A, {}, "-inf"),
        (NINF64[::-1], T.FLOAT64, C, {}, "-inf"),
        ([0xC3A9, 0x0000], T.STRING, A, {"length": 2}, "string not ASCII"),
    ],
)
def test_no_value_with_reason(
    words: list[int], dtype: DataType, order: ByteOrder, kwargs: dict[str, Any], reason: str
) -> None:
    value = decode(words, dtype=dtype, order=order, **kwargs)
    assert isinstance(value, NoValue)
    assert value.reason.startswith(reason)


def test_sentinel_only_matches_its_value() -> None:
    assert decode([0xFFFE], dtype=T.UINT16, sentinels=[0xFFFF]) == 65534


@pytest.mark.parametrize(
    ("words", "dtype", "order", "kwargs", "expected"),
    [
        # EM24 style: INT32, low word first, kWh x10
        ([0x3039, 0x0000], T.INT32, C, {"scale": 0.1}, 1234.5),
        # a temperature, INT16 x0.1, negative
        ([0xFF9C], T.INT16, A, {"scale": 0.1}, -10.0),
        ([0x00D7], T.INT16, A, {"scale": 0.1}, 21.5),
        # offset: raw 0..1000 = -40..60 °C
        ([500], T.UINT16, A, {"scale": 0.1, "offset": -40.0}, 10.0),
        # DALI arc level 0..254 shown as %
        ([254], T.UINT16, A, {"scale": 100 / 254}, 100.0),
        # MWh meter read into kWh
        ([0x0000, 0x0007], T.UINT32, A, {"scale": 1000.0}, 7000.0),
    ],
)
def test_scale_and_offset(
    words: list[int], dtype: DataType, order: ByteOrder, kwargs: dict[str, Any], expected: float
) -> None:
    value = decode(words, dtype=dtype, order=order, **kwargs)
    assert isinstance(value, float)
    assert value == pytest.approx(expected)
    assert encode(value, dtype=dtype, order=order, **kwargs) == words


@pytest.mark.parametrize(
    ("words", "order", "length", "expected"),
    [
        ([0x5344, 0x4D36, 0x3330, 0x0000], A, 4, "SDM630"),
        ([0x4453, 0x364D, 0x3033, 0x0000], B, 4, "SDM630"),
        ([0x454D, 0x3234, 0x2020], A, 3, "EM24"),
        ([0x0000, 0x0000], A, 2, ""),
    ],
)
def test_strings(words: list[int], order: ByteOrder, length: int, expected: str) -> None:
    assert decode(words, dtype=T.STRING, order=order, length=length) == expected


@pytest.mark.parametrize(
    ("word", "bit", "expected"),
    [(0x0001, 0, True), (0x0001, 1, False), (0x8000, 15, True), (0x7FFF, 15, False)],
)
def test_bits(word: int, bit: int, expected: bool) -> None:
    assert decode([word], dtype=T.BITS, bit=bit) is expected


def test_bool() -> None:
    assert decode([1], dtype=T.BOOL) is True
    assert decode([False], dtype=T.BOOL) is False


@pytest.mark.parametrize(
    ("words", "dtype", "length"),
    [
        ([1], T.UINT32, None),
        ([1, 2], T.UINT16, None),
        ([1, 2, 3], T.FLOAT64, None),
        ([1], T.STRING, 2),
        ([0x10000], T.UINT16, None),
    ],
)
def test_wrong_word_count_or_value_raises(
    words: list[int], dtype: DataType, length: int | None
) -> None:
    with pytest.raises(ValueError, match=r"register"):
        decode(words, dtype=dtype, length=length)


@pytest.mark.parametrize(
    ("value", "dtype", "kwargs", "message"),
    [
        (70000, T.UINT16, {}, "out of range for uint16"),
        (-1, T.UINT32, {}, "out of range for uint32"),
        (40000, T.INT16, {}, "out of range for int16"),
        (7000, T.UINT16, {"scale": 0.1}, "out of range"),
        (1e39, T.FLOAT32, {}, "out of range for float32"),
        ("x", T.UINT16, {}, "takes a number"),
        (True, T.UINT16, {}, "takes a number"),
        ("TOOLONG", T.STRING, {"length": 2}, "longer than 4"),
        (1, T.BOOL, {}, "true or false"),
    ],
)
def test_encode_out_of_range_raises(
    value: Any, dtype: DataType, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode(value, dtype=dtype, **kwargs)


@pytest.mark.parametrize("order", list(ByteOrder))
@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        (T.INT16, -2),
        (T.UINT16, 65000),
        (T.INT32, -70000),
        (T.UINT32, 4_000_000_000),
        (T.INT64, -(2**40)),
        (T.UINT64, 2**63 + 5),
        (T.FLOAT32, -0.15625),
        (T.FLOAT64, math.pi),
    ],
)
def test_round_trip_every_order(order: ByteOrder, dtype: DataType, value: float) -> None:
    assert decode(encode(value, dtype=dtype, order=order), dtype=dtype, order=order) == value
