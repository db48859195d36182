"""Modbus RTU on a serial line, for real: the gateway's pymodbus serial client on one pty of a
socat pair, pymodbus's serial server with units built from the shipped profiles on the other,
and the bytes between them paced at the baud rate (``serialline.SerialLine``)."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from pathlib import Path

import pytest

from openbranch.edge.core.config import DeviceConfig
from openbranch.integrations.modbus import rtu
from openbranch.integrations.modbus.profile import CATALOGUE
from openbranch.integrations.modbus.serialline import Sender, SerialLine
from openbranch.integrations.modbus.transport import BusPool
from tests.integrations.modbus.rs485 import Line, fields_of, on_a_line, rtu_device


def three_units(port: Path, baudrate: int) -> list[DeviceConfig]:
    return [
        rtu_device("main-meter", "eastron-sdm630", port, 1, baudrate=baudrate),
        rtu_device("heat", "kamstrup-multical-603", port, 5, baudrate=baudrate),
        rtu_device("reading-room", "vaisala-gmw90", port, 12, baudrate=baudrate),
    ]


def give_values(line: Line) -> None:
    line.units["main-meter"].set("power_total", 2750.0)
    line.units["main-meter"].set("voltage_l2", 231.5)
    line.units["main-meter"].set("import_kwh", 12345.5)
    line.units["heat"].set("power", 15000.0)
    line.units["heat"].set("supply_temp", 70.5)
    line.units["reading-room"].set("co2", 650)
    line.units["reading-room"].set("temperature", 21.5)


def check_values(line: Line, results: dict[str, dict[str, object]]) -> None:
    assert results["main-meter"]["energy.power_w"] == 2750.0
    assert results["main-meter"]["electrical.voltage_v[l2]"] == 231.5
    assert results["main-meter"]["energy.register"] == 12345.5
    assert results["heat"]["energy.power_w"] == pytest.approx(15000.0)
    assert results["heat"]["energy.supply_temp_c"] == 70.5
    assert results["reading-room"]["indoor.co2_ppm"] == 650
    assert results["reading-room"]["indoor.temperature_c"] == 21.5


@pytest.mark.parametrize("baudrate", [9600, 19200])
def test_three_units_share_one_line_in_turn_with_the_silence_between_frames(
    socat: str, tmp_path: Path, baudrate: int
) -> None:
    """One queue per line: three devices polled at once take turns on the line, one request
    each in turn; every request waits for t3.5 of silence; the bytes take their time on the
    wire, so a cycle takes at least the line's physical bound."""

    async def main() -> None:
        async with on_a_line(
            tmp_path / "ttyRS485", three_units(tmp_path / "ttyRS485", baudrate)
        ) as line:
            give_values(line)
            devices = line.devices.values()
            started = time.monotonic()
            results = await asyncio.gather(*(d.poll(["default", "energy"]) for d in devices))
            took = time.monotonic() - started
            assert all(r.reached and not r.failures and not r.missing for r in results)
            check_values(
                line,
                {d.device_id: fields_of(r.readings) for d, r in zip(devices, results, strict=True)},
            )

            frames = line.line.frames
            requests = line.gateway_frames()
            assert len(requests) == sum(len(d.requests()) for d in devices) == 5
            assert [f.data[0] for f in requests[:3]] == [1, 5, 12]  # in turn, not one by one
            silence = rtu.silence(baudrate)
            for before, after in itertools.pairwise(frames):
                assert after.start >= before.end  # one talker at a time
                if after.sender is Sender.GATEWAY:
                    assert after.start - before.end >= silence, (before, after)
                else:  # each answer follows its request, from the unit asked
                    assert before.sender is Sender.GATEWAY and after.data[0] == before.data[0]

            exchanges = [rtu.Exchange.read(r.table, r.count) for d in devices for r in d.requests()]
            bound = rtu.bus_time(exchanges, baudrate=baudrate)
            assert took >= 0.97 * bound, (took, bound)  # the bytes were paced
            assert took <= 2 * bound + 0.1, (took, bound)

    asyncio.run(main())


def test_a_profile_that_asks_for_a_pause_gets_it_before_its_own_requests(
    socat: str, tmp_path: Path
) -> None:
    slow = CATALOGUE.get("vaisala-gmw90").model_copy(
        update={"id": "slow-sensor", "pause_between_requests": 0.1}
    )
    port = tmp_path / "ttyRS485"
    configs = [
        rtu_device("main-meter", "eastron-sdm630", port, 1),
        rtu_device("slow", "slow-sensor", port, 2),
    ]

    async def main() -> None:
        async with on_a_line(port, configs, profiles={"slow-sensor": slow}) as line:
            for _ in range(2):
                results = await asyncio.gather(
                    *(d.poll(["default", "energy"]) for d in line.devices.values())
                )
                assert all(r.reached and not r.failures for r in results)
            frames = line.line.frames
            gaps: dict[int, list[float]] = {1: [], 2: []}
            for before, after in itertools.pairwise(frames):
                if after.sender is Sender.GATEWAY:
                    gaps[after.data[0]].append(after.start - before.end)
            assert len(gaps[2]) == 2 and min(gaps[2]) >= 0.1, gaps
            assert min(gaps[1]) < 0.1, gaps  # the meter is not paced for the sensor

    asyncio.run(main())


def test_the_line_refuses_parity_a_pty_cannot_carry(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="carries no parity bit"):
        SerialLine(port=tmp_path / "tty", baudrate=9600, parity="E", stopbits=1)


def test_request_times_at_9600_baud_stay_near_the_line_bound(socat: str, tmp_path: Path) -> None:
    """Five polls of the meter: the median is within 30 % of what the wire needs."""
    port = tmp_path / "ttyRS485"

    async def main() -> None:
        async with on_a_line(port, [rtu_device("main-meter", "eastron-sdm630", port, 1)]) as line:
            device = line.devices["main-meter"]
            exchanges = [rtu.Exchange.read(r.table, r.count) for r in device.requests()]
            bound = rtu.bus_time(exchanges, baudrate=9600)
            times = []
            for _ in range(5):
                started = time.monotonic()
                result = await device.poll(["default", "energy"])
                times.append(time.monotonic() - started)
                assert not result.failures
            assert statistics.median(times) <= 1.3 * bound, (times, bound)

    asyncio.run(main())


def test_devices_on_one_port_must_agree_on_the_line(tmp_path: Path) -> None:
    port = tmp_path / "ttyRS485"
    pool = BusPool()
    first = rtu_device("main-meter", "eastron-sdm630", port, 1).transport
    same = rtu_device("reading-room", "vaisala-gmw90", port, 12).transport
    other = rtu_device("heat", "kamstrup-multical-603", port, 5, baudrate=19200).transport
    assert pool.get(first) is pool.get(same)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"devices on one line must agree on its settings"):
        pool.get(other)  # type: ignore[arg-type]
