"""RTU line timing and frame sizes: pure tables."""

from __future__ import annotations

import pytest
from pymodbus.framer import FramerRTU

from openbranch.integrations.modbus import rtu
from openbranch.integrations.modbus.register import Table


def crc(frame: bytes) -> bytes:
    return frame + FramerRTU.compute_CRC(frame).to_bytes(2, "big")


@pytest.mark.parametrize(
    ("parity", "stopbits", "bits"),
    [("E", 1, 11), ("O", 1, 11), ("N", 2, 11), ("N", 1, 10), ("E", 2, 12)],
)
def test_character_bits(parity: str, stopbits: int, bits: int) -> None:
    assert rtu.character_bits(parity, stopbits) == bits


@pytest.mark.parametrize(("parity", "stopbits"), [("X", 1), ("E", 3), ("N", 0)])
def test_no_such_character(parity: str, stopbits: int) -> None:
    with pytest.raises(ValueError, match="no serial character"):
        rtu.character_bits(parity, stopbits)


@pytest.mark.parametrize(
    ("baud", "char_ms", "silence_ms"),
    [
        (1200, 9.1667, 32.0833),
        (9600, 1.1458, 4.0104),
        (19200, 0.5729, 2.0052),
        (38400, 0.2865, 1.75),  # above 19200 the standard fixes t3.5 at 1.75 ms
        (115200, 0.0955, 1.75),
    ],
)
def test_character_time_and_silence_at_11_bits(
    baud: int, char_ms: float, silence_ms: float
) -> None:
    assert rtu.character_time(baud) * 1000 == pytest.approx(char_ms, abs=1e-4)
    assert rtu.silence(baud) * 1000 == pytest.approx(silence_ms, abs=1e-4)


def test_character_time_needs_a_baud_rate() -> None:
    with pytest.raises(ValueError, match="baud rate 0"):
        rtu.character_time(0)


@pytest.mark.parametrize(
    ("table", "count", "size"),
    [
        (Table.HOLDING, 1, 7),
        (Table.INPUT, 72, 149),
        (Table.HOLDING, 125, 255),
        (Table.COIL, 1, 6),
        (Table.COIL, 8, 6),
        (Table.DISCRETE_INPUT, 9, 7),
        (Table.COIL, 2000, 255),
    ],
)
def test_read_response_bytes(table: Table, count: int, size: int) -> None:
    assert rtu.read_response_bytes(table, count) == size


def test_bus_time_counts_both_frames_and_two_silences() -> None:
    # an SDM630 poll: input 0+72 and input 72+2 at 9600 baud, 8E1
    exchanges = [rtu.Exchange.read(Table.INPUT, 72), rtu.Exchange.read(Table.INPUT, 2)]
    chars = (8 + 149) + (8 + 9)
    expected = chars * 11 / 9600 + 4 * 3.5 * 11 / 9600
    assert rtu.bus_time(exchanges, baudrate=9600) == pytest.approx(expected)
    assert rtu.bus_time(exchanges, baudrate=19200) == pytest.approx(expected / 2)
    assert rtu.bus_time([], baudrate=9600) == 0


REQUESTS = [  # (frame as the gateway sends it, its length)
    (crc(bytes.fromhex("010300000002")), 8),  # read holding
    (crc(bytes.fromhex("0a0400100004")), 8),  # read input
    (crc(bytes.fromhex("010100000010")), 8),  # read coils
    (crc(bytes.fromhex("01020000000a")), 8),  # read discrete inputs
    (crc(bytes.fromhex("01050001ff00")), 8),  # write coil
    (crc(bytes.fromhex("01060064002a")), 8),  # write register
    (crc(bytes.fromhex("010f0000000a02ff03")), 11),  # write coils: 2 data bytes
    (crc(bytes.fromhex("011000640002040001000a")), 13),  # write registers: 4 data bytes
    (crc(bytes.fromhex("0116000400f20025")), 10),  # mask write register
    (crc(bytes.fromhex("011700000002000a000102002a")), 15),  # read/write registers
]
RESPONSES = [
    (crc(bytes.fromhex("010304000000e6")), 9),  # two registers
    (crc(bytes.fromhex("0a0402abcd")), 7),
    (crc(bytes.fromhex("01010205ff")), 7),
    (crc(bytes.fromhex("010201ff")), 6),
    (crc(bytes.fromhex("01050001ff00")), 8),  # echo of write coil
    (crc(bytes.fromhex("01060064002a")), 8),
    (crc(bytes.fromhex("010f0000000a")), 8),
    (crc(bytes.fromhex("011000640002")), 8),
    (crc(bytes.fromhex("0116000400f20025")), 10),
    (crc(bytes.fromhex("01170200ab")), 7),
    (crc(bytes.fromhex("018302")), 5),  # exception 2 to a read of holding registers
    (crc(bytes.fromhex("019003")), 5),
]


@pytest.mark.parametrize(("frame", "size"), REQUESTS)
def test_request_lengths_from_every_prefix(frame: bytes, size: int) -> None:
    assert len(frame) == size
    known = [rtu.frame_length(frame[:n], from_device=False) for n in range(len(frame) + 1)]
    first = next(n for n, k in enumerate(known) if k is not None)
    assert all(k is None for k in known[:first])  # more bytes needed until then
    assert all(k == size for k in known[first:])  # and the same answer from there on


@pytest.mark.parametrize(("frame", "size"), RESPONSES)
def test_response_lengths_from_every_prefix(frame: bytes, size: int) -> None:
    assert len(frame) == size
    known = [rtu.frame_length(frame[:n], from_device=True) for n in range(len(frame) + 1)]
    first = next(n for n, k in enumerate(known) if k is not None)
    assert first <= 3  # unit, function, byte count at most
    assert all(k is None for k in known[:first])
    assert all(k == size for k in known[first:])


@pytest.mark.parametrize("function", [0, 7, 8, 43, 0x41, 0xFF])
def test_an_unknown_function_is_not_delimited(function: int) -> None:
    with pytest.raises(ValueError, match=f"function code {function} "):
        rtu.frame_length(bytes([1, function, 0, 0]), from_device=False)
    if not function & 0x80:
        with pytest.raises(ValueError, match="not one this line knows"):
            rtu.frame_length(bytes([1, function, 0, 0]), from_device=True)
