"""`openbranch gateway check --connect --scan`: what a technician runs before leaving the
building, as a command against a simulated RS-485 line: every point read once (value, unit,
request, time, exception) and the unit ids that answer, within a time limit."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from openbranch.integrations.modbus.register import Table
from tests.integrations.modbus.rs485 import on_a_line, rtu_device

ROOT = Path(__file__).resolve().parents[3]


def test_check_connect_reads_every_point_and_scans_the_line(socat: str, tmp_path: Path) -> None:
    port = tmp_path / "ttyRS485"
    on_line = [
        rtu_device("main-meter", "eastron-sdm630", port, 1, baudrate=19200),
        rtu_device("reading-room", "vaisala-gmw90", port, 12, baudrate=19200),
        rtu_device("stranger", "kamstrup-multical-603", port, 7, baudrate=19200),  # not configured
    ]
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""\
branch: {{id: probe, name: Probe branch}}
store: {{path: {tmp_path / "outbox.db"}}}
devices:
  - id: main-meter
    profile: eastron-sdm630
    transport: {{type: modbus_rtu, serial_port: {port}, baudrate: 19200, parity: N, stopbits: 2, unit_id: 1}}
  - id: reading-room
    profile: vaisala-gmw90
    transport: {{type: modbus_rtu, serial_port: {port}, baudrate: 19200, parity: N, stopbits: 2, unit_id: 12}}
  - id: boiler-room
    profile: vaisala-gmw90
    transport: {{type: modbus_rtu, serial_port: {port}, baudrate: 19200, parity: N, stopbits: 2, unit_id: 3, timeout: 100ms}}
"""
    )

    async def main() -> str:
        async with on_a_line(port, on_line) as line:
            line.units["main-meter"].set("power_total", 2750.0)
            line.units["reading-room"].set("co2", 650)
            line.units["reading-room"].set("temperature", 21.5)
            line.units["reading-room"].fail_point("humidity", code=2)  # no humidity module
            command = [sys.executable, "-m", "openbranch.edge.cli", "gateway", "check"]
            process = await asyncio.create_subprocess_exec(
                *command,
                str(config),
                "--elsewhere",
                "--connect",
                "--scan",
                "2",
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await process.communicate()
            assert process.returncode == 0, err.decode()
            return out.decode()

    out = asyncio.run(main())
    lines = out.splitlines()

    def row(point: str) -> list[str]:
        found = [
            re.split(r"\s{2,}", line.strip())
            for line in lines
            if line.strip().startswith(point + " ")
        ]
        assert found, f"no row for {point} in\n{out}"
        return found[0]

    assert "main-meter (eastron-sdm630 on serial://" in out
    power = row("power_total")
    assert power[:3] == ["power_total", "2750", "W"]
    voltage = row("voltage_l1")
    assert voltage[3] == "input 0+74" and voltage[4].endswith(" ms")  # one request, timed
    assert int(voltage[4].split()[0]) >= 80  # 157 bytes each way at 19200 baud: 82 ms at least
    assert row("co2")[:3] == ["co2", "650", "ppm"]
    assert row("temperature")[:3] == ["temperature", "21.5", "°C"]
    assert (
        "input 256+3  " in out and "exception 2 (illegal data address): read point by point" in out
    )
    assert row("humidity")[1:] == [
        "-",
        "input 257+1",
        row("humidity")[3],
        "exception 2 (illegal data address)",
    ]
    boiler = out[out.index("boiler-room (") :]
    assert re.search(r"co2\s+-\s+input 256\+3\s+\d+ ms\s+no answer \(timeout\)", boiler)
    scan = out[out.index("unit ids on serial://") :]
    assert "unit 1: answers (exception 2 (illegal data address) to holding 0) (main-meter)" in scan
    assert "unit 7: answers (not in the config)" in scan
    assert "unit 3: NO ANSWER (boiler-room is configured there)" in scan
    assert re.search(r"time limit of 2 s reached: units \d+\.\.247 not scanned", scan)
    assert Table.INPUT.value in voltage[3]
