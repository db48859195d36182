"""Faults on an RS-485 line, made by the simulated line (``serialline.SerialLine``) between the
gateway's pymodbus serial client and pymodbus's serial server: garbage, a CRC error, an answer
cut in half, a unit that stops answering, the port unplugged and plugged back in; and a
transparent serial server (RTU over TCP) that drops the connection."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from openbranch.edge.core.clock import SystemClock
from openbranch.edge.core.config import DeviceConfig
from openbranch.edge.runtime.coordinator import Coordinator
from openbranch.integrations.modbus import rtu
from openbranch.integrations.modbus.device import ModbusDevice
from openbranch.integrations.modbus.profile import CATALOGUE
from openbranch.integrations.modbus.serialline import Sender
from openbranch.integrations.modbus.simulator import ModbusSimulator, SimulatedUnit
from openbranch.integrations.modbus.transport import Bus
from tests.integrations.modbus.rs485 import fields_of, on_a_line, rtu_device
from tests.services import free_port
from tests.support.waiting import until

SENSOR = {"indoor.co2_ppm": 650, "indoor.temperature_c": 21.5, "indoor.humidity_pct": 40.0}


def sensor_on(port: Path, **options: Any) -> list[DeviceConfig]:
    return [rtu_device("sensor", "vaisala-gmw90", port, 12, **options)]


GARBAGE = {
    "zeros": b"\x00\x00",  # break-like: read as "unit 0, function 12" by pymodbus's framers
    "ones": b"\xff" * 6,  # read as an exception response with a bad CRC
    "a stray frame start": bytes.fromhex("0c04"),  # looks like the start of a read of unit 12
}


def give_sensor_values(units: Any) -> None:
    for point, value in (("co2", 650), ("temperature", 21.5), ("humidity", 40.0)):
        units["sensor"].set(point, value)


@pytest.mark.parametrize("garbage", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_between_frames_is_dropped_and_waited_out(
    socat: str, tmp_path: Path, garbage: bytes
) -> None:
    """Noise while the line is idle reaches the gateway, which drops it and keeps t3.5 of
    silence after it before the next request (else the units would take the noise and the
    request for one bad frame, and drop the request)."""
    port = tmp_path / "ttyRS485"

    async def main() -> None:
        async with on_a_line(port, sensor_on(port)) as line:
            give_sensor_values(line.units)
            device = line.devices["sensor"]
            assert fields_of((await device.poll(["default"])).readings) == SENSOR
            line.line.inject(garbage)
            noise = line.line.frames[-1]
            assert noise.sender is Sender.NOISE
            await until(lambda: time.monotonic() > noise.end + 0.01, what="the noise has passed")
            for _ in range(3):
                result = await device.poll(["default"])
                assert result.reached and not result.failures and not result.missing
                assert fields_of(result.readings) == SENSOR
            assert line.bus.stats.retries == 0 and line.line.dropped == 0
            after = line.line.frames[line.line.frames.index(noise) + 1]
            assert after.start - noise.end >= rtu.silence(9600)

    asyncio.run(main())


@pytest.mark.parametrize("garbage", list(GARBAGE.values()), ids=list(GARBAGE))
def test_garbage_in_front_of_an_answer_costs_at_most_one_repeat(
    socat: str, tmp_path: Path, garbage: bytes
) -> None:
    port = tmp_path / "ttyRS485"

    async def main() -> None:
        async with on_a_line(port, sensor_on(port)) as line:
            give_sensor_values(line.units)
            device = line.devices["sensor"]
            poll = asyncio.create_task(device.poll(["default"]))
            await until(lambda: bool(line.gateway_frames()), what="the request is on the wire")
            line.line.inject(garbage)  # on the wire after the request, before the answer
            result = await poll
            assert result.reached and not result.failures
            assert fields_of(result.readings) == SENSOR
            assert line.bus.stats.retries <= 1
            kinds = [f.sender for f in line.line.frames[:3]]
            assert kinds == [Sender.GATEWAY, Sender.NOISE, Sender.DEVICE]

    asyncio.run(main())


def test_a_request_garbled_on_its_way_is_sent_again(socat: str, tmp_path: Path) -> None:
    """Noise runs into a request: the unit drops it, the gateway hears nothing and repeats
    it after its timeout; twice, and the device's cycle ends there (nothing was heard)."""
    port = tmp_path / "ttyRS485"

    async def main() -> None:
        async with on_a_line(port, sensor_on(port, timeout=0.1)) as line:
            give_sensor_values(line.units)
            device = line.devices["sensor"]
            line.line.garble_next_requests(1)
            result = await device.poll(["default"])
            assert result.reached and fields_of(result.readings) == SENSOR
            stats = line.bus.stats
            assert (stats.timeouts, stats.retries, stats.garbled) == (1, 1, 0)
            line.line.garble_next_requests(2)
            result = await device.poll(["default"])
            assert not result.reached
            assert "input 256+3: no answer (timeout)" in result.failures[0]
            assert (await device.poll(["default"])).reached
            assert line.line.dropped == 3

    asyncio.run(main())


@pytest.mark.parametrize("fault", ["corrupt", "cut"])
def test_a_crc_error_or_a_cut_answer_is_asked_again_without_waiting_for_the_timeout(
    socat: str, tmp_path: Path, fault: str
) -> None:
    port = tmp_path / "ttyRS485"

    async def main() -> None:
        async with on_a_line(port, sensor_on(port, timeout=1.0)) as line:
            give_sensor_values(line.units)
            device = line.devices["sensor"]
            await device.poll(["default"])
            getattr(line.line, f"{fault}_next_answers")(1)
            started = time.monotonic()
            result = await device.poll(["default"])
            took = time.monotonic() - started
            assert result.reached and not result.failures
            assert fields_of(result.readings) == SENSOR
            stats = line.bus.stats
            assert (stats.garbled, stats.retries, stats.timeouts) == (1, 1, 0)
            assert took < 0.5, took  # the stall gave it away, not the 1 s timeout
            answers = [f for f in line.line.frames if f.sender is Sender.DEVICE]
            assert len(answers[-2].data) < 11 if fault == "cut" else len(answers[-2].data) == 11

    asyncio.run(main())


@pytest.mark.parametrize("after", [0.03, 0.09, 0.15])
def test_the_gateway_busy_mid_answer_is_not_a_garbled_answer(
    socat: str, tmp_path: Path, after: float
) -> None:
    """The gateway's own loop stops for 120 ms (a garbage collection, a long callback) while an
    answer comes in: the line was not quiet, the gateway was not listening. The answer is
    read whole, with no repeat (decision 118; it was called garbled twice, and lost)."""
    port = tmp_path / "ttyRS485"

    async def main() -> None:
        async with on_a_line(port, [rtu_device("meter", "eastron-sdm630", port, 1)]) as line:
            line.units["meter"].set("import_kwh", 12345.5)
            device = line.devices["meter"]
            paused = time.monotonic() + after
            asyncio.get_running_loop().call_later(after, time.sleep, 0.12)  # blocks the loop
            result = await device.poll(["default", "energy"])
            assert result.reached and not result.failures and not result.missing
            assert fields_of(result.readings)["energy.register"] == 12345.5
            assert (line.bus.stats.garbled, line.bus.stats.retries) == (0, 0)
            answer = next(f for f in line.line.frames if f.sender is Sender.DEVICE)
            assert len(answer.data) == 149  # input 0+72, the first request
            assert answer.start < paused + 0.12 and paused < answer.end  # the pause fell in it

    asyncio.run(main())


def test_an_answer_garbled_twice_costs_only_the_points_of_its_request(
    socat: str, tmp_path: Path
) -> None:
    port = tmp_path / "ttyRS485"

    async def main() -> None:
        async with on_a_line(port, [rtu_device("meter", "eastron-sdm630", port, 1)]) as line:
            line.units["meter"].set("import_kwh", 12345.5)
            device = line.devices["meter"]
            line.line.corrupt_next_answers(2)  # the first request (input 0+72), and its repeat
            result = await device.poll(["default", "energy"])
            assert result.reached  # the device answered; the line mangled it
            (failure,) = result.failures
            assert "input 0+72: garbled answer (149 bytes, then silence" in failure  # 3+144+2
            default = {p.id for p in line.units["meter"].profile.points if p.group == "default"}
            assert set(result.missing) == default  # the 19 points of input 0+72
            assert fields_of(result.readings) == {"energy.register": 12345.5}
            result = await device.poll(["default", "energy"])
            assert not result.failures and not result.missing

    asyncio.run(main())


def test_a_unit_that_stops_answering_costs_only_its_own_cycles(
    socat: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The meter goes silent: each of its polls costs one request and its repeat, not all its
    requests; the sensor on the same line keeps its rhythm; the meter comes back by itself."""
    port = tmp_path / "ttyRS485"
    configs = [
        rtu_device("meter", "eastron-sdm630", port, 1, timeout=0.15),
        sensor_on(port, timeout=0.15)[0],
    ]
    caplog.set_level(logging.WARNING, logger="openbranch.edge.runtime.coordinator")

    async def main() -> None:
        async with on_a_line(port, configs) as line:
            emitted: list[Any] = []
            meter, sensor = (
                Coordinator(source=line.devices[d], clock=SystemClock(), emit=emitted.extend)
                for d in ("meter", "sensor")
            )
            tasks = [asyncio.create_task(c.run()) for c in (meter, sensor)]
            try:
                await until(lambda: meter.stats.polls >= 2 and sensor.stats.polls >= 2)
                assert meter.available and sensor.available
                line.units["meter"].set_silent(True)
                mark = len(line.line.frames)
                meter_polls, sensor_polls = meter.stats.polls, sensor.stats.polls
                await until(lambda: meter.available is False, what="the meter is down")
                await until(lambda: sensor.stats.polls >= sensor_polls + 5, what="sensor polls")
                to_meter = [
                    f
                    for f in line.line.frames[mark:]
                    if f.sender is Sender.GATEWAY and f.data[0] == 1
                ]
                failed_polls = meter.stats.polls - meter_polls
                assert failed_polls >= 1
                assert len(to_meter) <= 2 * failed_polls + 2  # + the poll under way at the mark
                assert all(f.data[1] == 4 and f.data[2:4] == b"\x00\x00" for f in to_meter[2:])
                assert sensor.available and sensor.stats.unreachable_polls == 0
                line.units["meter"].set_silent(False)
                await until(lambda: meter.available is True, within=5, what="the meter is back")
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("meter: unavailable" in m for m in messages) == 1, messages
    assert sum("meter: recovered" in m for m in messages) == 1, messages
    assert not any(m.startswith("sensor") for m in messages), messages


def test_the_port_unplugged_and_plugged_back_in_is_reopened_by_name(
    socat: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = tmp_path / "ttyUSB0"
    caplog.set_level(logging.WARNING, logger="openbranch.integrations.modbus.transport")

    async def main() -> None:
        async with on_a_line(port, sensor_on(port)) as line:
            line.units["sensor"].set("co2", 650)
            device = line.devices["sensor"]
            assert (await device.poll(["default"])).reached
            await line.line.unplug()
            assert not port.exists()
            failures = []
            for _ in range(2):
                result = await device.poll(["default"])
                assert not result.reached
                failures += result.failures
            assert "cannot open the serial port (no such serial port: unplugged?)" in failures[-1]
            await line.line.plug()
            result = await device.poll(["default"])
            assert result.reached and not result.failures
            assert fields_of(result.readings)["indoor.co2_ppm"] == 650
            assert line.bus.stats.reopened == 1 and line.bus.stats.ports_lost >= 1

    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("connection lost" in m for m in messages) == 1, messages
    assert sum("open again after" in m for m in messages) == 1, messages


def test_a_transparent_serial_server_that_drops_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """RTU over TCP: the serial server restarts (the connection drops); the next poll fails,
    the one after reconnects."""
    caplog.set_level(logging.WARNING, logger="openbranch.integrations.modbus.transport")
    port = free_port()
    config = DeviceConfig.model_validate(
        {
            "id": "sensor",
            "profile": "vaisala-gmw90",
            "transport": {
                "type": "modbus_rtu_over_tcp",
                "host": "127.0.0.1",
                "port": port,
                "unit_id": 12,
                "timeout": 0.3,
            },
        }
    )
    profile = CATALOGUE.get("vaisala-gmw90")
    unit = SimulatedUnit(device_id="sensor", profile=profile, unit_id=12)
    unit.set("co2", 650)

    async def main() -> None:
        server = ModbusSimulator(host="127.0.0.1", port=port, units=[unit], rtu_framing=True)
        await server.start()
        bus = Bus(config.transport)  # type: ignore[arg-type]
        device = ModbusDevice(
            config=config, profile=profile, bus=bus, branch="t", clock=SystemClock()
        )
        try:
            assert (await device.poll(["default"])).reached
            await server.stop()
            result = await device.poll(["default"])
            assert not result.reached
            await server.start()
            result = await device.poll(["default"])
            assert result.reached and fields_of(result.readings)["indoor.co2_ppm"] == 650
        finally:
            await bus.close()
            await server.stop()

    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("connection lost" in m for m in messages) == 1, messages
    assert sum("open again after" in m for m in messages) == 1, messages
