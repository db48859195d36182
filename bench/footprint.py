"""The gateway on a branch's small computer (issue 17 part 3): the demo branch's gateway at
real time with realistic polls, and what it costs.

    .venv/bin/python bench/footprint.py [--minutes 10] [--start 2026-12-01T11:00]

The branch is the demo's (examples/demo/gateway.yaml): its Modbus devices served by their
simulators and its MQTT devices publishing to a private Mosquitto, driven by the demo's
scenario; a private influxd is the sink; the demo's library system (SIP2) answers the entry
desk. The polls are a branch's, not the demo's accelerated ones (the config's ``poll:``):
meters every 10 s, the door every second, the people counter every 2 s, the lights every 5 s,
the climate sensor every 60 s. The gateway is a real process (``bench/soaklib/gatewayproc.py``)
at speed 1: real time, its clock starting at ``--start`` (default: last Tuesday 11:00 local,
staffed hours, so people come and go).

Sampled every ``SAMPLE_EVERY`` seconds from /proc/<pid>: CPU % of one core (utime + stime over
wall time), RSS, open descriptors; and from the outbox (read only): entries and bytes stored
(SQLite's live pages), per measurement and device. The first ``WARMUP`` seconds (imports,
connecting, the first poll of every series) are left out of the rates. Printed against the
targets: < 1 % CPU, < 60 MB RSS and flat (< 1 MB/hour), < 15 MB of outbox a day. RSS's slope is
given over the whole run and over its last half (bounded caches that fill in the first minutes,
such as the outbox's, are a rise that then stops: the last half shows whether it stopped).

A day's bytes are given two ways: the run's rate times 24 hours (as if the whole day were
as busy as the run's hour), and a day by the scenario's own visitor curve: the series that
people move (``TRAFFIC``: doors and counters) scaled by how busy the scenario's day is on
average against the run's hours (``BranchScenario.open_fraction``: 0 while closed), the
others (meters, lights, climate, health) times 24 hours. The target is judged on the latter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the gateway process is bench.soaklib's
    sys.path.insert(0, str(ROOT))

from bench.soaklib.gatewayproc import GatewayProcess  # noqa: E402
from openbranch.edge.core.registry import default_registry, load_checked  # noqa: E402
from openbranch.edge.core.schedule import OpeningHours  # noqa: E402
from openbranch.edge.demo.acs import DemoAcs  # noqa: E402
from openbranch.edge.demo.day import DEFAULT_CONFIG, prepare_config  # noqa: E402
from openbranch.edge.demo.scenario import BranchScenario  # noqa: E402
from openbranch.edge.demo.servers import Influxd, Mosquitto  # noqa: E402
from openbranch.edge.hours.calendar import Calendar  # noqa: E402

#: A branch's polls (seconds), per device of the demo config; every group of the device.
POLLS = {
    "main-meter": 10.0,
    "sub-meter-lights": 10.0,
    "district-heat": 10.0,
    "entrance-door": 1.0,
    "people-counter": 2.0,
    "lights": 5.0,
    "climate-reading-room": 60.0,
}
SAMPLE_EVERY = 5.0  # real seconds between two samples
WARMUP = 60.0  # real seconds left out of the rates
MARK_EVERY = 300.0  # real seconds between two RSS figures printed
STEP_EVERY = 0.5  # real seconds between two steps of the scenario
CPU_TARGET = 1.0  # % of one core
RSS_TARGET = 60.0  # MB
SLOPE_TARGET = 1.0  # MB/hour: "flat"
DAY_TARGET = 15.0  # MB of outbox a day
TICKS = os.sysconf("SC_CLK_TCK")
DAY = 86_400.0
TRAFFIC = frozenset({"door", "occupancy"})  # measurements written as people come and go


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # real seconds since the gateway was ready
    cpu_s: float  # utime + stime, seconds
    rss: int  # bytes
    fds: int


def sample(pid: int, t: float) -> Sample | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14, 15
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return Sample(t, cpu, rss * 1024, fds)


class Store:
    """The outbox, read only: its seq, live bytes, and what was written after a seq."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)

    def seq(self) -> int:
        (top,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()
        return int(top)

    def live_bytes(self) -> int:
        (pages,) = self._db.execute("PRAGMA page_count").fetchone()
        (free,) = self._db.execute("PRAGMA freelist_count").fetchone()
        (size,) = self._db.execute("PRAGMA page_size").fetchone()
        return (int(pages) - int(free)) * int(size)

    def written(self, after: int) -> list[tuple[str, str, int, int]]:
        """(measurement, device, entries, bytes of their lines) since ``after``."""
        rows = self._db.execute(
            "SELECT measurement, device, count(*), sum(length(line)) FROM entries"
            " WHERE seq > ? GROUP BY measurement, device ORDER BY 4 DESC",
            (after,),
        ).fetchall()
        return [(str(m), str(d), int(n), int(b)) for m, d, n, b in rows]

    def close(self) -> None:
        self._db.close()


def last_tuesday_11(tz: ZoneInfo) -> datetime:
    today = datetime.now(tz).replace(hour=11, minute=0, second=0, microsecond=0)
    return today - timedelta(days=(today.weekday() - 1) % 7 or 7)


def branch_config(
    workdir: Path, mosquitto: Mosquitto, influxd: Influxd, acs_port: int, heartbeat: str | None
) -> Path:
    path = prepare_config(
        DEFAULT_CONFIG,
        workdir,
        mqtt=(mosquitto.host, mosquitto.port),
        influx_url=influxd.url,
        library_port=acs_port,
    )
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["mqtt"].pop("protocol", None)  # Mosquitto speaks v5: the gateway's default
    for device in data["devices"]:
        if device["id"] in POLLS:
            groups = device.get("poll", {"default": 0})
            device["poll"] = dict.fromkeys(groups, POLLS[device["id"]])
    if heartbeat is not None:
        data["store"]["heartbeat"] = heartbeat
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def slope_per_hour(samples: Sequence[Sample]) -> float:
    """Least-squares slope of RSS over time, in MB per hour."""
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(s.t for s in samples) / n
    mr = sum(s.rss for s in samples) / n
    num = sum((s.t - mt) * (s.rss - mr) for s in samples)
    den = sum((s.t - mt) ** 2 for s in samples)
    return 0.0 if den == 0 else num / den * 3600 / 1e6


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


async def measure(args: argparse.Namespace, workdir: Path) -> int:
    mosquitto = Mosquitto()
    influxd = Influxd()
    acs = DemoAcs()
    mosquitto.start()
    influxd.start()
    influxd.query('CREATE DATABASE "openbranch"')
    await acs.start()
    gateway: GatewayProcess | None = None
    simulations: list[Any] = []
    try:
        config_path = branch_config(workdir, mosquitto, influxd, acs.port, args.heartbeat)
        config = load_checked(config_path)
        tz = ZoneInfo(config.branch.timezone)
        start = args.start.replace(tzinfo=tz) if args.start else last_tuesday_11(tz)
        simulations = default_registry().simulate(config.devices, mqtt=config.mqtt)
        devices = {k: v for sim in simulations for k, v in sim.devices.items()}
        card_door = None if config.entry is None else config.entry.readers[0].counter
        scenario = BranchScenario(
            devices=devices,
            timezone=tz,
            calendar=Calendar(config.hours or OpeningHours(), tz),
            card_door=card_door,
        )
        for sim in simulations:
            await sim.start()
        mono0 = time.monotonic()
        scenario.step(start, 0)
        gateway = GatewayProcess(
            config=config_path,
            store=Path(config.store.path),
            start=start,
            mono0=mono0,
            speed=1.0,
            log=workdir / "gateway.log",
        )
        await asyncio.to_thread(gateway.start)
        assert gateway.pid is not None
        pid = gateway.pid
        print(
            f"footprint: the demo branch's gateway (pid {pid}) at real time from "
            f"{start:%a %Y-%m-%d %H:%M} local for {args.minutes:g} minutes; polls "
            + ", ".join(f"{d} {s:g} s" for d, s in POLLS.items())
        )
        return await run(
            args,
            gateway=gateway,
            scenario=scenario,
            start=start,
            mono0=mono0,
            pid=pid,
            store_path=Path(config.store.path),
        )
    finally:
        if gateway is not None and gateway.running:
            await asyncio.to_thread(gateway.stop)
        for sim in simulations:
            await sim.stop()
        await acs.stop()
        influxd.close()
        mosquitto.close()


async def run(
    args: argparse.Namespace,
    *,
    gateway: GatewayProcess,
    scenario: BranchScenario,
    start: datetime,
    mono0: float,
    pid: int,
    store_path: Path,
) -> int:
    ready = time.monotonic()
    total = args.minutes * 60.0
    samples: list[Sample] = []
    store = Store(store_path)
    mark: tuple[float, int, int] | None = None  # (t, seq, live bytes) at the warm-up's end
    then = start
    next_sample = 0.0
    with tqdm(total=round(total), unit="s", desc="real time", leave=False) as bar:
        while (t := time.monotonic() - ready) < total:
            now = start + timedelta(seconds=time.monotonic() - mono0)
            scenario.step(now, (now - then).total_seconds())
            then = now
            if t >= next_sample:
                got = sample(pid, t)
                if got is None:
                    print(f"the gateway exited: see {gateway.log}")
                    return 1
                samples.append(got)
                if mark is None and t >= WARMUP:
                    mark = (t, store.seq(), store.live_bytes())
                next_sample += SAMPLE_EVERY
                bar.n = min(round(t), bar.total)
                bar.set_postfix_str(f"RSS {got.rss / 1e6:.1f} MB, {got.fds} fds")
            await asyncio.sleep(STEP_EVERY)
    end = sample(pid, time.monotonic() - ready)
    if end is not None:
        samples.append(end)
    assert mark is not None, "the run is shorter than the warm-up"
    elapsed = samples[-1].t - mark[0]
    written = store.written(mark[1])
    grown = store.live_bytes() - mark[2]
    store.close()
    status = gateway.status() or {}
    busy = day_factor(scenario, start + timedelta(seconds=mark[0]), now)
    report(
        samples,
        warm=mark[0],
        elapsed=elapsed,
        written=written,
        grown=grown,
        status=status,
        busy=busy,
    )
    return 0


def day_factor(scenario: BranchScenario, start: datetime, end: datetime) -> float:
    """How busy the run's day is on average, against the run's own hours (minute steps)."""

    def mean(t0: datetime, t1: datetime) -> float:
        minutes = max(1, int((t1 - t0).total_seconds() // 60))
        busy = sum(scenario.open_fraction(t0 + timedelta(minutes=m)) for m in range(minutes))
        return busy / minutes

    midnight = start.astimezone(scenario.timezone).replace(hour=0, minute=0, second=0)
    run = mean(start, end)
    return 1.0 if run == 0 else mean(midnight, midnight + timedelta(days=1)) / run


def report(
    samples: Sequence[Sample],
    *,
    warm: float,
    elapsed: float,
    written: Sequence[tuple[str, str, int, int]],
    grown: int,
    status: dict[str, Any],
    busy: float,
) -> None:
    steady = [s for s in samples if s.t >= warm]
    windows = [(b.cpu_s - a.cpu_s) / (b.t - a.t) * 100 for a, b in itertools.pairwise(steady)]
    cpu = (steady[-1].cpu_s - steady[0].cpu_s) / (steady[-1].t - steady[0].t) * 100
    rss = [s.rss / 1e6 for s in steady]
    slope = slope_per_hour(steady)
    middle = (steady[0].t + steady[-1].t) / 2
    late = slope_per_hour([s for s in steady if s.t >= middle])
    marks = [s.rss / 1e6 for s in steady if s.t % MARK_EVERY < SAMPLE_EVERY]
    entries = sum(n for _, _, n, _ in written)
    line_bytes = sum(b for _, _, _, b in written) or 1
    per_day = grown / elapsed * DAY / 1e6
    traffic = sum(b for m, _, _, b in written if m in TRAFFIC) / line_bytes
    a_day = per_day * (1 - traffic + traffic * busy)
    print(
        f"over {elapsed / 60:.1f} minutes after a {warm:.0f} s warm-up "
        f"({len(steady)} samples every {SAMPLE_EVERY:g} s):"
    )
    print(
        f"  CPU        {cpu:.2f} % of one core (windows: start {windows[0]:.2f}, max "
        f"{max(windows):.2f}, end {windows[-1]:.2f})   target < {CPU_TARGET:g} %: "
        f"{verdict(cpu < CPU_TARGET)}"
    )
    print(
        f"  RSS        start {rss[0]:.1f} MB, max {max(rss):.1f}, end {rss[-1]:.1f}; slope "
        f"{slope:+.2f} MB/hour   target < {RSS_TARGET:g} MB: {verdict(max(rss) < RSS_TARGET)}"
        f", flat (< {SLOPE_TARGET:g} MB/hour): {verdict(abs(slope) < SLOPE_TARGET)}"
    )
    print(
        f"  RSS        last half (from {middle / 60:.0f} min on): slope {late:+.2f} MB/hour   "
        f"flat: {verdict(abs(late) < SLOPE_TARGET)}"
    )
    print(f"  RSS every {MARK_EVERY / 60:g} min  " + " ".join(f"{m:.1f}" for m in marks))
    fds = [s.fds for s in steady]
    print(f"  open fds   start {fds[0]}, max {max(fds)}, end {fds[-1]}")
    print(
        f"  outbox     {entries} entries = {entries / elapsed:.3f} entries/s, "
        f"{entries / elapsed * DAY:,.0f} a day at this rate; {grown / 1e6:.3f} MB of live "
        f"pages = {per_day:.1f} MB/day at this rate"
    )
    print(
        f"  a day      {a_day:.1f} MB by the scenario's day (doors and counters {traffic:.0%} "
        f"of the run's bytes, the day {busy:.2f}x as busy as the run)   target < "
        f"{DAY_TARGET:g} MB/day: {verdict(a_day < DAY_TARGET)}"
    )
    store = status.get("store", {})
    if "suppressed" in store:
        by = ", ".join(f"{m} {n}" for m, n in sorted(store["suppressed_by"].items()))
        print(
            f"  suppressed unchanged (gateway status, since its start): {store['suppressed']}"
            f" ({by}); heartbeat {store['heartbeat']:g} s"
        )
    print("  written per measurement and device (a day at the run's rate; share of the bytes):")
    for measurement, device, n, b in written:
        share = b / line_bytes
        print(
            f"    {measurement:<14} {device:<22} {n / elapsed * DAY:>9,.0f} entries "
            f"{share * per_day:>6.2f} MB/day ({share:5.1%})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="real minutes (>= 2)")
    parser.add_argument(
        "--start",
        type=datetime.fromisoformat,
        help="the branch's local time at the start (default: last Tuesday 11:00)",
    )
    parser.add_argument(
        "--heartbeat",
        help="the config's store.heartbeat (default: the gateway's; 0 writes every reading, "
        "as before report by exception)",
    )
    parser.add_argument("--keep", type=Path, help="keep the run's files in this folder")
    args = parser.parse_args(argv)
    if args.minutes * 60 < WARMUP + 2 * SAMPLE_EVERY:
        parser.error(f"--minutes: at least {(WARMUP + 2 * SAMPLE_EVERY) / 60:g}")
    with contextlib.ExitStack() as stack:
        workdir = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(measure(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
