"""Register words in, values out (and back): every type in every byte order, sentinels, NaN and
infinity, scale and offset, strings, bits.

Expected words are literal hex, and a second, independent model of the byte orders (Telegraf's
byte patterns applied to ``struct.pack`` output) checks the literals, so an implementation that
mixes up an order fails twice.
"""

from __future__ import annotations

import itertools
import math
import struct
from typing import Any

import pytest

from openbranch.integrations.modbus.decode import NoValue, decode, encode
from openbranch.integrations.modbus.register import ByteOrder, DataType

A, B, C, D = ByteOrder.ABCD, ByteOrder.BADC, ByteOrder.CDAB, ByteOrder.DCBA
T = DataType
NUMBERS = (T.INT16, T.UINT16, T.INT32, T.UINT32, T.INT64, T.UINT64, T.FLOAT32, T.FLOAT64)
FORMAT = {T.INT16: "h", T.UINT16: "H", T.INT32: "i", T.UINT32: "I"}
FORMAT |= {T.INT64: "q", T.UINT64: "Q", T.FLOAT32: "f", T.FLOAT64: "d"}

# Wire bytes of each order, A being the most significant byte (Telegraf's modbus names).
PATTERN = {
    2: {A: "AB", C: "AB", B: "BA", D: "BA"},
    4: {A: "ABCD", C: "CDAB", B: "BADC", D: "DCBA"},
    8: {A: "ABCDEFGH", C: "GHEFCDAB", B: "BADCFEHG", D: "HGFEDCBA"},
}


def wire(value: float, dtype: DataType, order: ByteOrder) -> list[int]:
    """The registers a device sends for ``value``, modelled apart from the decoder."""
    big = struct.pack(">" + FORMAT[dtype], value)
    raw = bytes(big[ord(letter) - ord("A")] for letter in PATTERN[len(big)][order])
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def case_id(words: list[int], dtype: DataType, order: ByteOrder, extra: object = "") -> str:
    hexwords = "_".join(f"{w:04X}" if isinstance(w, int) else str(w) for w in words)
    return f"{dtype}-{order}-{hexwords}{'-' + str(extra) if extra != '' else ''}"


# (words, dtype, order, expected)
LITERALS: list[tuple[list[int], DataType, ByteOrder, int | float]] = [
    # int16 -123 = 0xFF85
    ([0xFF85], T.INT16, A, -123),
    ([0xFF85], T.INT16, C, -123),
    ([0x85FF], T.INT16, B, -123),
    ([0x85FF], T.INT16, D, -123),
    # uint16 0x1234 = 4660
    ([0x1234], T.UINT16, A, 4660),
    ([0x1234], T.UINT16, C, 4660),
    ([0x3412], T.UINT16, B, 4660),
    ([0x3412], T.UINT16, D, 4660),
    # int32 -123456789 = 0xF8A432EB
    ([0xF8A4, 0x32EB], T.INT32, A, -123456789),
    ([0x32EB, 0xF8A4], T.INT32, C, -123456789),
    ([0xA4F8, 0xEB32], T.INT32, B, -123456789),
    ([0xEB32, 0xA4F8], T.INT32, D, -123456789),
    # uint32 4000000000 = 0xEE6B2800 (above the int32 range)
    ([0xEE6B, 0x2800], T.UINT32, A, 4_000_000_000),
    ([0x2800, 0xEE6B], T.UINT32, C, 4_000_000_000),
    ([0x6BEE, 0x0028], T.UINT32, B, 4_000_000_000),
    ([0x0028, 0x6BEE], T.UINT32, D, 4_000_000_000),
    # int64 -123456789012345 = 0xFFFF8FB779F22087
    ([0xFFFF, 0x8FB7, 0x79F2, 0x2087], T.INT64, A, -123456789012345),
    ([0x2087, 0x79F2, 0x8FB7, 0xFFFF], T.INT64, C, -123456789012345),
    ([0xFFFF, 0xB78F, 0xF279, 0x8720], T.INT64, B, -123456789012345),
    ([0x8720, 0xF279, 0xB78F, 0xFFFF], T.INT64, D, -123456789012345),
    # uint64 0x0102030405060708 = 72623859790382856
    ([0x0102, 0x0304, 0x0506, 0x0708], T.UINT64, A, 72623859790382856),
    ([0x0708, 0x0506, 0x0304, 0x0102], T.UINT64, C, 72623859790382856),
    ([0x0201, 0x0403, 0x0605, 0x0807], T.UINT64, B, 72623859790382856),
    ([0x0807, 0x0605, 0x0403, 0x0201], T.UINT64, D, 72623859790382856),
    # float32 230.5 = 0x43668000
    ([0x4366, 0x8000], T.FLOAT32, A, 230.5),
    ([0x8000, 0x4366], T.FLOAT32, C, 230.5),
    ([0x6643, 0x0080], T.FLOAT32, B, 230.5),
    ([0x0080, 0x6643], T.FLOAT32, D, 230.5),
    # float64 12345.6789 = 0x40C81CD6E631F8A1
    ([0x40C8, 0x1CD6, 0xE631, 0xF8A1], T.FLOAT64, A, 12345.6789),
    ([0xF8A1, 0xE631, 0x1CD6, 0x40C8], T.FLOAT64, C, 12345.6789),
    ([0xC840, 0xD61C, 0x31E6, 0xA1F8], T.FLOAT64, B, 12345.6789),
    ([0xA1F8, 0x31E6, 0xD61C, 0xC840], T.FLOAT64, D, 12345.6789),
]
LITERAL_IDS = [case_id(w, t, o) for w, t, o, _ in LITERALS]


def test_literals_cover_every_number_type_in_every_order() -> None:
    covered = {(dtype, order) for _, dtype, order, _ in LITERALS}
    assert covered == set(itertools.product(NUMBERS, ByteOrder))


@pytest.mark.parametrize(("words", "dtype", "order", "expected"), LITERALS, ids=LITERAL_IDS)
def test_decode(words: list[int], dtype: DataType, order: ByteOrder, expected: float) -> None:
    value = decode(words, dtype=dtype, order=order)
    assert value == expected
    assert type(value) is type(expected)  # no scale, no offset: integers stay int


@pytest.mark.parametrize(("words", "dtype", "order", "expected"), LITERALS, ids=LITERAL_IDS)
def test_encode(words: list[int], dtype: DataType, order: ByteOrder, expected: float) -> None:
    assert encode(expected, dtype=dtype, order=order) == words


@pytest.mark.parametrize(("words", "dtype", "order", "expected"), LITERALS, ids=LITERAL_IDS)
def test_literals_match_the_byte_patterns(
    words: list[int], dtype: DataType, order: ByteOrder, expected: float
) -> None:
    assert wire(expected, dtype, order) == words


NAN32 = wire(math.nan, T.FLOAT32, A)  # 0x7FC00000
NAN64 = wire(math.nan, T.FLOAT64, A)

# (words, dtype, order, kwargs, reason)
NO_VALUES: list[tuple[list[int], DataType, ByteOrder, dict[str, Any], str]] = [
    ([0xFFFF], T.UINT16, A, {"sentinels": [0xFFFF]}, "sentinel 0xFFFF (not available)"),
    ([0xFFFF], T.UINT16, B, {"sentinels": [0xFFFF]}, "sentinel 0xFFFF (not available)"),
    ([0x8000], T.INT16, A, {"sentinels": [0x8000]}, "sentinel 0x8000 (not available)"),
    ([0x0080], T.INT16, D, {"sentinels": [0x8000]}, "sentinel 0x8000 (not available)"),
    ([0xFFFF], T.INT16, A, {"sentinels": {0x8000, 0xFFFF}}, "sentinel 0xFFFF (not available)"),
    (
        [0xFFFF, 0xFFFF],
        T.UINT32,
        A,
        {"sentinels": [0xFFFFFFFF]},
        "sentinel 0xFFFFFFFF (not available)",
    ),
    (
        [0xFFFF, 0xFFFF],
        T.UINT32,
        C,
        {"sentinels": [0xFFFFFFFF]},
        "sentinel 0xFFFFFFFF (not available)",
    ),
    # sentinels are compared in value order: int32 0x80000000 arrives as 0000 8000 in CDAB
    (
        [0x0000, 0x8000],
        T.INT32,
        C,
        {"sentinels": [0x80000000]},
        "sentinel 0x80000000 (not available)",
    ),
    (
        [0x8000, 0x0000],
        T.INT32,
        A,
        {"sentinels": [0x80000000]},
        "sentinel 0x80000000 (not available)",
    ),
    (
        [0xFFFF] * 4,
        T.UINT64,
        A,
        {"sentinels": [2**64 - 1]},
        "sentinel 0xFFFFFFFFFFFFFFFF (not available)",
    ),
    # the sentinel is checked before scale and offset
    (
        [0xFFFF],
        T.UINT16,
        A,
        {"sentinels": [0xFFFF], "scale": 0.1, "offset": 5},
        "sentinel 0xFFFF (not available)",
    ),
    # a quiet NaN is no value by itself, and says it is a sentinel when it is declared one
    (NAN32, T.FLOAT32, A, {}, "NaN"),
    (NAN32, T.FLOAT32, A, {"sentinels": [0x7FC00000]}, "sentinel 0x7FC00000 (not available)"),
    (
        [0x0000, 0x7FC0],
        T.FLOAT32,
        C,
        {"sentinels": [0x7FC00000]},
        "sentinel 0x7FC00000 (not available)",
    ),
    ([0x7FC0, 0x0000], T.FLOAT32, A, {"sentinels": [0xFFFFFFFF]}, "NaN"),
    ([0x0000, 0xC07F], T.FLOAT32, D, {}, "NaN"),
    ([0x7F80, 0x0000], T.FLOAT32, A, {}, "+inf"),
    ([0x0000, 0x7F80], T.FLOAT32, C, {}, "+inf"),
    ([0xFF80, 0x0000], T.FLOAT32, A, {}, "-inf"),
    ([0x80FF, 0x0000], T.FLOAT32, B, {}, "-inf"),
    (NAN64, T.FLOAT64, A, {}, "NaN"),
    ([0x7FF8, 0x0000, 0x0000, 0x0001], T.FLOAT64, A, {}, "NaN"),  # a NaN with a payload
    ([0x7FF0, 0x0000, 0x0000, 0x0000], T.FLOAT64, A, {}, "+inf"),
    ([0x0000, 0x0000, 0x0000, 0x7FF0], T.FLOAT64, C, {}, "+inf"),
    ([0xFFF0, 0x0000, 0x0000, 0x0000], T.FLOAT64, A, {}, "-inf"),
    ([0x0000, 0x0000, 0x0000, 0xF0FF], T.FLOAT64, D, {}, "-inf"),
    ([0x7FF0, 0x0000, 0x0000, 0x0000], T.FLOAT64, A, {"scale": 0.1}, "+inf"),
]


@pytest.mark.parametrize(
    ("words", "dtype", "order", "kwargs", "reason"),
    NO_VALUES,
    ids=[case_id(w, t, o, "+".join([*k, r])) for w, t, o, k, r in NO_VALUES],
)
def test_no_value(
    words: list[int], dtype: DataType, order: ByteOrder, kwargs: dict[str, Any], reason: str
) -> None:
    assert decode(words, dtype=dtype, order=order, **kwargs) == NoValue(reason)


@pytest.mark.parametrize(
    ("words", "dtype", "sentinels", "expected"),
    [
        ([0xFFFE], T.UINT16, [0xFFFF], 65534),
        ([0x8000], T.INT16, [], -32768),  # 0x8000 is only "not available" when declared so
        ([0x8001], T.INT16, [0x8000], -32767),
        ([0x0000, 0xFFFF], T.UINT32, [0xFFFFFFFF], 0xFFFF),
    ],
    ids=["uint16-near-sentinel", "int16-undeclared", "int16-near-sentinel", "uint32-half"],
)
def test_values_that_are_not_sentinels(
    words: list[int], dtype: DataType, sentinels: list[int], expected: int
) -> None:
    assert decode(words, dtype=dtype, sentinels=sentinels) == expected


# (words, dtype, order, kwargs, expected); decode gives a float, encode gives the words back
SCALED: list[tuple[list[int], DataType, ByteOrder, dict[str, Any], float]] = [
    # EM24 style: INT32, least significant word first, kWh x 10
    ([0x3039, 0x0000], T.INT32, C, {"scale": 0.1}, 1234.5),
    ([0xCFC7, 0xFFFF], T.INT32, C, {"scale": 0.1}, -1234.5),  # exported energy
    # temperatures: INT16 x 0.1, negative too
    ([0x00D7], T.INT16, A, {"scale": 0.1}, 21.5),
    ([0xFF9C], T.INT16, A, {"scale": 0.1}, -10.0),
    ([0xFFFB], T.INT16, A, {"scale": 0.1}, -0.5),
    ([0x9CFF], T.INT16, B, {"scale": 0.1}, -10.0),
    # offset: raw 0..1000 is -40..60 °C
    ([500], T.UINT16, A, {"scale": 0.1, "offset": -40.0}, 10.0),
    ([0], T.UINT16, A, {"scale": 0.1, "offset": -40.0}, -40.0),
    ([7], T.UINT16, A, {"offset": 273.15}, 280.15),
    # DALI arc level 0..254 as %
    ([254], T.UINT16, A, {"scale": 100 / 254}, 100.0),
    # MWh register read as kWh
    ([0x0000, 0x0007], T.UINT32, A, {"scale": 1000.0}, 7000.0),
    # a float with a unit conversion: W as kW
    ([0x8000, 0x4366], T.FLOAT32, C, {"scale": 0.001}, 0.2305),
    ([0x0000, 0x0000, 0x0000, 0x0000], T.INT64, A, {"scale": 0.01, "offset": 1.0}, 1.0),
]


@pytest.mark.parametrize(
    ("words", "dtype", "order", "kwargs", "expected"),
    SCALED,
    ids=[case_id(w, t, o, e) for w, t, o, _, e in SCALED],
)
def test_scale_and_offset(
    words: list[int], dtype: DataType, order: ByteOrder, kwargs: dict[str, Any], expected: float
) -> None:
    value = decode(words, dtype=dtype, order=order, **kwargs)
    assert type(value) is float
    assert value == pytest.approx(expected)
    assert encode(expected, dtype=dtype, order=order, **kwargs) == words


# (words, order, length, expected)
STRINGS: list[tuple[list[int], ByteOrder, int, str | NoValue]] = [
    ([0x5344, 0x4D36, 0x3330, 0x0000], A, 4, "SDM630"),
    ([0x5344, 0x4D36, 0x3330, 0x0000], C, 4, "SDM630"),  # registers are never reordered
    ([0x4453, 0x364D, 0x3033, 0x0000], B, 4, "SDM630"),
    ([0x4453, 0x364D, 0x3033, 0x0000], D, 4, "SDM630"),
    ([0x454D, 0x3234, 0x2020], A, 3, "EM24"),  # space padded
    ([0x4142, 0x2000, 0x0000], A, 3, "AB"),  # space then NUL padded
    ([0x4142, 0x4300], A, 2, "ABC"),  # odd length, high byte first
    ([0x4241, 0x0043], B, 2, "ABC"),  # odd length, low byte first
    ([0x2041, 0x2042], A, 2, " A B"),  # leading and inner spaces stay
    ([0x0000, 0x0000], A, 2, ""),
    ([0xC3A9, 0x0000], A, 2, NoValue("string not ASCII")),
    ([0x4142, 0x0A43], A, 2, NoValue("string has control characters")),
]


@pytest.mark.parametrize(
    ("words", "order", "length", "expected"),
    STRINGS,
    ids=[case_id(w, T.STRING, o) for w, o, _, _ in STRINGS],
)
def test_strings(words: list[int], order: ByteOrder, length: int, expected: str | NoValue) -> None:
    assert decode(words, dtype=T.STRING, order=order, length=length) == expected


@pytest.mark.parametrize(
    ("words", "order", "text"),
    [(w, o, e) for w, o, _, e in STRINGS[:4]],
    ids=[str(o) for _, o, _, _ in STRINGS[:4]],
)
def test_encode_string(words: list[int], order: ByteOrder, text: str) -> None:
    assert encode(text, dtype=T.STRING, order=order, length=len(words)) == words


@pytest.mark.parametrize(
    ("word", "bit", "expected"),
    [
        (0x0001, 0, True),
        (0xFFFE, 0, False),
        (0x8000, 15, True),
        (0x7FFF, 15, False),
        (0x0010, 4, True),
        (0x0010, 3, False),
    ],
    ids=lambda v: f"{v:04X}" if isinstance(v, int) and not isinstance(v, bool) else str(v),
)
def test_bits(word: int, bit: int, expected: bool) -> None:
    assert decode([word], dtype=T.BITS, bit=bit) is expected
    for order in ByteOrder:  # bits number the register's value, whatever the byte order
        assert decode([word], dtype=T.BITS, order=order, bit=bit) is expected


@pytest.mark.parametrize(
    ("words", "expected"),
    [([1], True), ([0], False), ([True], True), ([False], False)],
    ids=["1", "0", "True", "False"],
)
def test_bool(words: list[int], expected: bool) -> None:
    assert decode(words, dtype=T.BOOL) is expected


@pytest.mark.parametrize(
    ("words", "dtype", "kwargs", "message"),
    [
        ([1], T.UINT32, {}, r"uint32 needs 2 register\(s\), got 1"),
        ([1, 2], T.UINT16, {}, r"uint16 needs 1 register\(s\), got 2"),
        ([1, 2, 3], T.FLOAT64, {}, r"float64 needs 4 register\(s\), got 3"),
        ([1, 2, 3, 4, 5], T.INT64, {}, r"int64 needs 4 register\(s\), got 5"),
        ([], T.INT16, {}, r"int16 needs 1 register\(s\), got 0"),
        ([1], T.STRING, {"length": 2}, r"string needs 2 register\(s\), got 1"),
        ([1, 0], T.BOOL, {}, r"bool needs 1 register\(s\), got 2"),
        ([1], T.STRING, {}, "needs a length"),
        ([0x10000], T.UINT16, {}, r"65536 is not an integer in 0\.\.65535"),
        ([-1], T.INT16, {}, r"-1 is not an integer in 0\.\.65535"),
        ([1.5], T.UINT16, {}, r"1\.5 is not an integer"),
        ([2], T.BOOL, {}, r"2 is not an integer in 0\.\.1"),
        ([1], T.BITS, {}, "needs a bit in 0..15, got None"),
        ([1], T.BITS, {"bit": 16}, "needs a bit in 0..15, got 16"),
    ],
    ids=lambda v: str(v) if not isinstance(v, str) else None,
)
def test_bad_words_raise(
    words: list[Any], dtype: DataType, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        decode(words, dtype=dtype, **kwargs)


@pytest.mark.parametrize(
    ("value", "dtype", "kwargs", "message"),
    [
        (70000, T.UINT16, {}, r"70000 is out of range for uint16 \(0\.\.65535\)"),
        (-1, T.UINT16, {}, r"-1 is out of range for uint16 \(0\.\.65535\)"),
        (40000, T.INT16, {}, r"40000 is out of range for int16 \(-32768\.\.32767\)"),
        (-32769, T.INT16, {}, r"out of range for int16 \(-32768\.\.32767\)"),
        (-1, T.UINT32, {}, r"out of range for uint32 \(0\.\.4294967295\)"),
        (2**31, T.INT32, {}, r"out of range for int32 \(-2147483648\.\.2147483647\)"),
        (2**63, T.INT64, {}, r"out of range for int64"),
        (2**64, T.UINT64, {}, r"out of range for uint64 \(0\.\.18446744073709551615\)"),
        (7000, T.UINT16, {"scale": 0.1}, r"7000 \(raw 70000\.0\) is out of range for uint16"),
        (-41, T.UINT16, {"scale": 0.1, "offset": -40}, r"-41 \(raw -10\.0\) is out of range"),
        (1e39, T.FLOAT32, {}, r"1e\+39 is out of range for float32 \(±3\.4028235e\+38\)"),
        (math.nan, T.FLOAT32, {}, "not a finite number"),
        (math.inf, T.FLOAT64, {}, "not a finite number"),
        (math.inf, T.INT16, {}, "not a finite number"),
        ("x", T.UINT16, {}, "uint16 takes a number"),
        (True, T.UINT16, {}, "uint16 takes a number"),
        (5, T.UINT16, {"scale": 0}, "scale 0"),
        ("TOOLONG", T.STRING, {"length": 2}, r"longer than 4 characters \(2 registers\)"),
        ("blå", T.STRING, {"length": 2}, "printable ASCII"),
        ("a\nb", T.STRING, {"length": 2}, "printable ASCII"),
        (42, T.STRING, {"length": 2}, "string takes text"),
        (1, T.BOOL, {}, "bool takes true or false"),
        (0, T.BITS, {}, "bits takes true or false"),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else None,
)
def test_encode_out_of_range_raises(
    value: Any, dtype: DataType, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode(value, dtype=dtype, **kwargs)


ROUND_TRIP_VALUES: dict[DataType, list[Any]] = {
    T.INT16: [-32768, -2, 0, 32767],
    T.UINT16: [0, 65000, 65535],
    T.INT32: [-(2**31), -70000, 2**31 - 1],
    T.UINT32: [0, 4_000_000_000, 2**32 - 1],
    T.INT64: [-(2**63), -(2**40) - 3, 2**63 - 1],
    T.UINT64: [0, 2**63 + 5, 2**64 - 1],
    T.FLOAT32: [-0.15625, 0.0, 230.5, 2.0**127, 2.0**-149],  # exact in 32 bits
    T.FLOAT64: [math.pi, -1e300, 5e-324],
    T.STRING: ["", "A", "EM24", "SDM630-M"],
    T.BITS: [True, False],
    T.BOOL: [True, False],
}
ROUND_TRIPS = [
    (dtype, order, value)
    for dtype, values in ROUND_TRIP_VALUES.items()
    for order in ByteOrder
    for value in values
]


def test_round_trips_cover_every_type() -> None:
    assert set(ROUND_TRIP_VALUES) == set(DataType)


@pytest.mark.parametrize(
    ("dtype", "order", "value"),
    ROUND_TRIPS,
    ids=[f"{d}-{o}-{v!r}" for d, o, v in ROUND_TRIPS],
)
def test_round_trip(dtype: DataType, order: ByteOrder, value: Any) -> None:
    length = 4 if dtype is T.STRING else None
    kwargs: dict[str, Any] = {"bit": 0} if dtype is T.BITS else {}
    words = encode(value, dtype=dtype, order=order, length=length)
    assert all(0 <= w <= 0xFFFF for w in words)
    if dtype in FORMAT:
        assert words == wire(value, dtype, order)
    back = decode(words, dtype=dtype, order=order, length=length, **kwargs)
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize("order", list(ByteOrder))
@pytest.mark.parametrize(
    ("dtype", "value", "kwargs"),
    [
        (T.INT16, -12.3, {"scale": 0.1}),
        (T.UINT32, 98765.4, {"scale": 0.1}),
        (T.INT64, -5.25, {"scale": 0.01, "offset": -1.0}),
        (T.FLOAT32, 21.5, {"scale": 0.5, "offset": 10.0}),
        (T.FLOAT64, 1234.5678, {"scale": 1000.0}),
    ],
    ids=["int16", "uint32", "int64", "float32", "float64"],
)
def test_scaled_round_trip(
    order: ByteOrder, dtype: DataType, value: float, kwargs: dict[str, Any]
) -> None:
    words = encode(value, dtype=dtype, order=order, **kwargs)
    assert decode(words, dtype=dtype, order=order, **kwargs) == pytest.approx(value)
