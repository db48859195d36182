"""How many Modbus requests a poll cycle costs, and how long it takes, planned vs one per point.

For a config with every shipped profile it prints, per profile, the requests per poll cycle
with the planner, with one request per point (what Home Assistant and the ThingsBoard gateway do
by default), and the lower bound for that register set under the 125-register limit and the
profile's max_gap. Then it polls 50 simulated devices on loopback (real Modbus TCP servers built
from the profiles) both ways and prints the wall time of a poll cycle.

    .venv/bin/python bench/modbus_plan.py [--devices 50] [--cycles 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from openbranch.edge.core.clock import SystemClock
from openbranch.edge.core.config import DeviceConfig
from openbranch.edge.demo.servers import free_port
from openbranch.integrations.modbus.device import ModbusDevice
from openbranch.integrations.modbus.planner import lower_bound, plan
from openbranch.integrations.modbus.profile import CATALOGUE, ModbusProfile
from openbranch.integrations.modbus.simulator import ModbusSimulator, SimulatedUnit
from openbranch.integrations.modbus.transport import Bus


def counts(profile: ModbusProfile) -> tuple[int, int, int]:
    points = [p.footprint() for p in profile.points if p.measurement is not None]
    holes = [h.hole() for h in profile.holes]
    groups = {p.group for p in profile.points if p.measurement is not None}
    planned = bound = 0
    for group in groups:
        mine = [
            p.footprint() for p in profile.points if p.measurement is not None and p.group == group
        ]
        limits = {"max_gap": profile.max_gap, "max_registers": profile.max_registers}
        planned += len(plan(mine, holes=holes, **limits))
        bound += lower_bound(mine, holes=holes, **limits)
    return planned, len(points), bound


def table() -> tuple[int, int, int]:
    print(f"{'profile':<28} {'planned':>8} {'per point':>10} {'lower bound':>12}")
    totals = [0, 0, 0]
    for profile_id, profile in sorted(CATALOGUE.all().items()):
        row = counts(profile)
        totals = [t + r for t, r in zip(totals, row, strict=True)]
        print(f"{profile_id:<28} {row[0]:>8} {row[1]:>10} {row[2]:>12}")
    planned, per_point, bound = totals
    print(f"{'all profiles':<28} {planned:>8} {per_point:>10} {bound:>12}")
    print(
        f"planner = lower bound: {planned == bound}; "
        f"one-per-point / planner = {per_point / planned:.1f}x fewer requests"
    )
    return planned, per_point, bound


async def cycle_times(n_devices: int, cycles: int, one_per_point: bool) -> list[float]:
    profiles = sorted(CATALOGUE.all().values(), key=lambda p: p.id)
    servers, devices, buses = [], [], []
    for i in range(n_devices):
        profile = profiles[i % len(profiles)]
        port = free_port()
        unit = SimulatedUnit(device_id=f"dev-{i}", profile=profile, unit_id=1)
        server = ModbusSimulator(host="127.0.0.1", port=port, units=[unit])
        await server.start()
        servers.append(server)
        config = DeviceConfig.model_validate(
            {
                "id": f"dev-{i}",
                "profile": profile.id,
                "transport": {
                    "type": "modbus_tcp",
                    "host": "127.0.0.1",
                    "port": port,
                    "one_request_per_point": one_per_point,
                },
            }
        )
        bus = Bus(config.transport)  # type: ignore[arg-type]
        buses.append(bus)
        devices.append(
            ModbusDevice(
                config=config, profile=profile, bus=bus, branch="bench", clock=SystemClock()
            )
        )
    times = []
    try:
        for _ in range(cycles + 1):
            t0 = time.perf_counter()
            results = await asyncio.gather(*(d.poll(list(d.intervals())) for d in devices))
            times.append(time.perf_counter() - t0)
            bad = [r for r in results if r.failures]
            if bad:
                raise RuntimeError(f"poll failures: {bad[0].failures}")
    finally:
        for bus in buses:
            await bus.close()
        for server in servers:
            await server.stop()
    return times[1:]  # the first cycle pays for connecting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    table()
    print()
    print(f"poll cycle of {args.devices} simulated devices on loopback, {args.cycles} cycles:")
    results = {}
    for label, one in (("planned", False), ("one per point", True)):
        times = asyncio.run(cycle_times(args.devices, args.cycles, one))
        results[label] = statistics.median(times)
        print(
            f"  {label:<14} median {results[label] * 1000:8.1f} ms   "
            f"min {min(times) * 1000:8.1f} ms   max {max(times) * 1000:8.1f} ms"
        )
    print(
        f"  one per point / planned = {results['one per point'] / results['planned']:.1f}x the time"
    )


if __name__ == "__main__":
    main()
