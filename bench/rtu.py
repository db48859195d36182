"""One poll cycle of every shipped profile on one RS-485 line, against the physical limit.

Every profile in the catalogue becomes a simulated unit (unit ids 1..8) on one simulated line
(``integrations/modbus/serialline.py``: two socat pty pairs, each byte paced at the baud rate,
t3.5 before each answer; pymodbus's serial server on the far end). The gateway's devices poll
every group once, all at the same time (one queue per line), planned and one request per point.
For each it prints the time of a cycle against the lower bound computed from the bytes on the
wire: 11 bits per character (8N2 on the pty, as 8E1 on a real line), request + response, and
t3.5 of silence after each frame (``rtu.bus_time``).

    .venv/bin/python bench/rtu.py [--cycles 10] [--baud 9600 19200]

Targets (issue 16): measured / lower bound <= 1.3; one-per-point / planned >= 3x in bus time.
The gateway and the simulated line share one event loop (and this machine's two cores with
whatever else runs), so the measured time includes both sides' Python and the loop's timer
resolution (1 ms) on top of the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from openbranch.edge.core.clock import SystemClock
from openbranch.edge.core.config import DeviceConfig
from openbranch.integrations.modbus import rtu
from openbranch.integrations.modbus.device import ModbusDevice
from openbranch.integrations.modbus.profile import CATALOGUE
from openbranch.integrations.modbus.serialline import Sender, SerialLine
from openbranch.integrations.modbus.simulator import ModbusRtuSimulator, SimulatedUnit
from openbranch.integrations.modbus.transport import BusPool


@dataclass(frozen=True)
class Run:
    baud: int
    one_per_point: bool
    requests: int
    wire_bytes: int
    bound: float  # seconds
    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)


async def run(directory: Path, baud: int, one_per_point: bool, cycles: int) -> Run:
    port = directory / f"tty{baud}{'-per-point' if one_per_point else ''}"
    profiles = sorted(CATALOGUE.all().items())
    configs = [
        DeviceConfig.model_validate(
            {
                "id": profile_id,
                "profile": profile_id,
                "transport": {
                    "type": "modbus_rtu",
                    "serial_port": str(port),
                    "baudrate": baud,
                    "parity": "N",
                    "stopbits": 2,
                    "unit_id": unit,
                    "timeout": 1.0,
                    "one_request_per_point": one_per_point,
                },
            }
        )
        for unit, (profile_id, _) in enumerate(profiles, start=1)
    ]
    line = SerialLine(port=port, baudrate=baud, parity="N", stopbits=2)
    units = [
        SimulatedUnit(device_id=p.id, profile=p, unit_id=unit)
        for unit, (_, p) in enumerate(profiles, start=1)
    ]
    simulator = ModbusRtuSimulator(line=line, units=units)
    await simulator.start()
    pool = BusPool()
    devices = [
        ModbusDevice(
            config=c,
            profile=CATALOGUE.get(c.profile),
            bus=pool.get(c.transport),  # type: ignore[arg-type]
            branch="bench",
            clock=SystemClock(),
        )
        for c in configs
    ]

    async def cycle() -> float:
        started = time.monotonic()
        results = await asyncio.gather(*(d.poll(list(d.intervals())) for d in devices))
        took = time.monotonic() - started
        failures = [f for r in results for f in r.failures]
        assert not failures, failures
        return took

    try:
        await cycle()  # warm-up: the port opens, nothing is counted
        mark = len(line.frames)
        times = [await cycle() for _ in range(cycles)]
        wire = sum(len(f.data) for f in line.frames[mark:] if f.sender is not Sender.NOISE)
    finally:
        await pool.close()
        await simulator.stop()
    requests = [r for d in devices for r in d.requests()]
    exchanges = [rtu.Exchange.read(r.table, r.count) for r in requests]
    expected = sum(e.request + e.response for e in exchanges)
    assert wire == expected * cycles, (wire, expected * cycles)  # the bytes the bound counts
    return Run(
        baud=baud,
        one_per_point=one_per_point,
        requests=len(requests),
        wire_bytes=expected,
        bound=rtu.bus_time(exchanges, baudrate=baud),
        times=times,
    )


def show(run: Run) -> None:
    kind = "one per point" if run.one_per_point else "planned"
    ms = [t * 1000 for t in run.times]
    print(
        f"{run.baud:>6}  {kind:<14} {run.requests:>8} {run.wire_bytes:>6}"
        f" {run.bound * 1000:>9.1f} ms {statistics.median(ms):>9.1f} ms"
        f" ({min(ms):.1f}-{max(ms):.1f}) {run.median / run.bound:>8.2f}"
    )


async def main(cycles: int, bauds: list[int]) -> None:
    print(
        f"one poll cycle of {len(CATALOGUE.all())} devices (every shipped profile) on one"
        f" RS-485 line, 11 bits per character, {cycles} cycles (median, min-max):"
    )
    print(
        f"{'baud':>6}  {'plan':<14} {'requests':>8} {'bytes':>6} {'lower bound':>12}"
        f" {'measured':>12} {'':>13} {'measured/bound':>8}"
    )
    with tempfile.TemporaryDirectory(prefix="openbranch-rtu-") as directory:
        for baud in bauds:
            planned = await run(Path(directory), baud, False, cycles)
            per_point = await run(Path(directory), baud, True, cycles)
            show(planned)
            show(per_point)
            print(
                f"{'':>6}  one per point / planned: {per_point.bound / planned.bound:.1f}x the"
                f" bus time (lower bounds), {per_point.median / planned.median:.1f}x measured"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--baud", type=int, nargs="+", default=[9600, 19200])
    args = parser.parse_args()
    asyncio.run(main(args.cycles, args.baud))
