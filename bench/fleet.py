"""A fleet after a central outage: N gateways' drainers release their backlogs on one influxd.

Each gateway holds ``--hours`` of readings in its own outbox (a SQLite file, filled through
``Outbox.append`` with ``Reading.to_line``: energy, occupancy, door, indoor and light lines at a
gateway's measured rate, 4.55 entries a second for the demo branch, issue 17), written while the
central InfluxDB was down. Then every drainer (``edge.telemetry.sink.Drainer`` with its
``InfluxV1Writer``, the gateway's own code) is released at the same instant against a fresh
private influxd: the worst case, where every gateway's retry lands at once.

The gateways run in ``--processes`` worker processes, each with an event loop and a worker
thread per gateway (a gateway's drainer writes from its own thread). Measured per run:

- time from the release until influxd has acknowledged every point (and the count of stored
  points, which must equal the backlog);
- with ``--outage S``: the drainers start while influxd is down and back off (the sink's
  exponential, jittered backoff, capped at ``--backoff-max``); influxd comes back after S
  seconds and their own retries release them: how those first retries spread;
- the load influxd sees, from its own ``/debug/vars`` sampled every second: peak and mean write
  requests/s and points/s, most writes in flight, its CPU and peak RSS;
- failed writes as the drainers saw them (status, or no answer: timeouts, refused, reset).

Runs compare ``--max-rate`` values (lines a second per gateway; 0 = unlimited, the default of a
sink). All clients share the machine's cores with influxd, unlike a real fleet, so the client
side (gzip, SQLite reads) competes with the server: compare runs with each other.

    .venv/bin/python bench/fleet.py [--gateways 200] [--hours 1] [--max-rate 0 500]
                                    [--outage 180 --backoff-max 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from openbranch.edge.core import schema
from openbranch.edge.core.config import InfluxV1Sink
from openbranch.edge.core.reading import Reading
from openbranch.edge.demo.servers import Influxd
from openbranch.edge.telemetry.outbox import Outbox
from openbranch.edge.telemetry.sink import Drainer, InfluxV1Writer, Retryable, SinkError

GATEWAY_RATE = 4.55  # entries a second: the demo branch's gateway on main (issue 17)
OUTAGE_END = datetime(2026, 12, 1, 9, tzinfo=UTC)
DATABASE = "libraries"


def backlog(gateway: int, hours: float, rate: float = GATEWAY_RATE) -> list[Reading]:
    """A gateway's readings over the ``hours`` before the outage ended, at ``rate`` a second."""
    n = int(hours * 3600 * rate)
    start = OUTAGE_END - timedelta(hours=hours)
    branch = f"branch-{gateway:04d}"
    out = []
    for i in range(n):
        when = start + timedelta(seconds=i / rate)
        kind, device = i % 5, f"dev-{(i // 5) % 4}"
        tags: dict[str, str] = {}
        fields: dict[str, Any]
        if kind == 0:
            kwh = 1000.0 + i * 0.0021
            fields, tags = (
                {"register": kwh, "total": kwh, "power_w": 7500.0 + i % 900},
                {"carrier": "electricity"},
            )
            measurement = schema.ENERGY
        elif kind == 1:
            fields, measurement = {"entered": i // 40, "exited": i // 41}, schema.OCCUPANCY
        elif kind == 2:
            fields, measurement = {"mode": "free", "locked": False, "open": i % 7 == 0}, schema.DOOR
        elif kind == 3:
            fields = {"temperature_c": 21.0 + (i % 30) / 10, "co2_ppm": 450.0 + i % 400}
            tags, measurement = {"zone": "hall"}, schema.INDOOR
        else:
            fields, tags, measurement = {"on": True, "level": 80.0}, {"zone": "hall"}, schema.LIGHT
        out.append(
            Reading(
                branch=branch,
                device=device,
                measurement=measurement,
                fields=fields,
                tags=tags,
                time=when,
            )
        )
    return out


# -- a worker process: some gateways' outboxes and drainers ----------------------------------


class Counting:
    """The gateway's writer, keeping when each request was sent and how it failed (by status;
    "" when it stored its lines)."""

    def __init__(self, writer: InfluxV1Writer) -> None:
        self.writer = writer
        self.name = writer.name
        self.attempts: list[tuple[float, str]] = []

    def write(self, lines: Sequence[str]) -> None:
        sent = time.time()
        try:
            self.writer.write(lines)
        except Retryable as exc:
            self.attempts.append((sent, str(exc.status) if exc.status else "no answer"))
            raise
        except SinkError as exc:
            self.attempts.append((sent, type(exc).__name__))
            raise
        self.attempts.append((sent, ""))

    def close(self) -> None:
        self.writer.close()


async def _drain_all(drainers: list[Drainer], counts: list[int]) -> list[float]:
    """Run every drainer until it stored its backlog; return when each finished (wall clock)."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=len(drainers)))
    stop = asyncio.Event()
    done: list[float] = [0.0] * len(drainers)
    tasks = [asyncio.create_task(d.run(stop)) for d in drainers]
    while not all(done):
        for i, (drainer, count) in enumerate(zip(drainers, counts, strict=True)):
            if not done[i] and drainer.stats.written >= count:
                done[i] = time.time()
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    return done


def worker(gateways: list[int], hours: float, workdir: str, conn: Connection) -> None:
    """Fill the outboxes, say so, then run each configuration the parent sends."""
    paths, counts = [], []
    for g in gateways:
        path = Path(workdir) / f"gw-{g:04d}.db"
        readings = backlog(g, hours)
        with Outbox(path, max_bytes=2**40) as box:
            box.append(readings)
        paths.append(path)
        counts.append(len(readings))
    conn.send("filled")
    while (job := conn.recv()) is not None:
        url, database, max_rate, release, backoff_max = job
        writers = [
            Counting(InfluxV1Writer(InfluxV1Sink(type="influxdb_v1", url=url, database=database)))
            for _ in gateways
        ]
        outboxes = [
            Outbox(path, max_bytes=2**40, sinks=[w.name])
            for path, w in zip(paths, writers, strict=True)
        ]
        drainers = [
            Drainer(outbox=box, writer=w, max_rate=max_rate or None, backoff_max=backoff_max)
            for box, w in zip(outboxes, writers, strict=True)
        ]
        time.sleep(max(0.0, release - time.time()))  # every gateway at the same instant
        finished = asyncio.run(_drain_all(drainers, counts))
        if any(box.depth(d.name) for box, d in zip(outboxes, drainers, strict=True)):
            raise RuntimeError("a drainer counted its backlog stored, its outbox disagrees")
        for w in writers:
            w.close()
        for box in outboxes:
            box.close()
        conn.send(
            {
                "finished": finished,
                "attempts": [w.attempts for w in writers],
                "written": sum(d.stats.written for d in drainers),
            }
        )


# -- the parent: influxd, its load, the runs --------------------------------------------------


@dataclass
class Load:
    """influxd's own counters, sampled while the fleet catches up."""

    influxd: Influxd
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    heap_peak: float = 0.0
    active_peak: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def read(self) -> tuple[float, dict[str, float]]:
        """influxd's write counters and its own time when it took them (a loaded server may
        answer late; stamping the answer's arrival would make some windows look faster)."""
        with urllib.request.urlopen(f"{self.influxd.url}/debug/vars", timeout=10) as response:
            data = json.loads(response.read())
        self.heap_peak = max(self.heap_peak, float(data["memstats"]["Sys"]))
        httpd = next(v for k, v in data.items() if k.startswith("httpd"))["values"]
        self.active_peak = max(self.active_peak, float(httpd["writeReqActive"]))
        stamp, _, fraction = data["system"]["currentTime"].rstrip("Z").partition(".")
        taken = datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()
        return taken + float(f"0.{fraction or 0}"), {k: float(v) for k, v in httpd.items()}

    def run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.samples.append(self.read())
            except OSError:  # a sample the loaded server did not answer in time
                continue

    def stop(self) -> None:
        self._stop.set()

    def rates(self, key: str) -> list[float]:
        return [
            (b[key] - a[key]) / (tb - ta)
            for (ta, a), (tb, b) in zip(self.samples, self.samples[1:], strict=False)
            if tb > ta
        ]


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def peak_rss_mb(pid: int | None) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stored(influxd: Influxd) -> int:
    total = 0
    for measurement, f in (
        (schema.ENERGY, "power_w"),
        (schema.OCCUPANCY, "entered"),
        (schema.DOOR, "open"),
        (schema.INDOOR, "co2_ppm"),
        (schema.LIGHT, "level"),
    ):
        rows = influxd.rows(f'SELECT count("{f}") FROM "{measurement.name}"', DATABASE)
        total += int(rows[0][1]) if rows else 0
    return total


def one_run(
    pipes: list[Connection], max_rate: int, expected: int, outage: float, backoff_max: float
) -> dict[str, Any]:
    """One configuration on a fresh influxd; with ``outage``, the drainers start while it is
    down, back off, and are released by their own retries when it comes back."""
    with Influxd() as influxd:
        influxd.query(f'CREATE DATABASE "{DATABASE}"')
        if outage:
            influxd.stop()
        release = time.time() + 1.0
        for pipe in pipes:
            pipe.send((influxd.url, DATABASE, max_rate, release, backoff_max))
        time.sleep(max(0.0, release + outage - time.time()))
        influxd.start()
        up = time.time()  # the release: influxd answers (again)
        load = Load(influxd)
        _, base = load.read()
        cpu0 = cpu_seconds(influxd.pid)
        load.samples.append(load.read())
        sampler = threading.Thread(target=load.run, daemon=True)
        sampler.start()
        results = [pipe.recv() for pipe in pipes]
        end = max(t for r in results for t in r["finished"])
        load.stop()
        sampler.join()
        load.samples.append(load.read())
        cpu = cpu_seconds(influxd.pid) - cpu0
        rss = peak_rss_mb(influxd.pid)
        count = stored(influxd)
    attempts = [a for r in results for gateway in r["attempts"] for a in gateway]
    failures = Counter(kind for sent, kind in attempts if kind and sent >= up)
    first = sorted(
        min(sent for sent, kind in gateway if not kind) - up
        for r in results
        for gateway in r["attempts"]
    )
    finish = sorted(t - up for r in results for t in r["finished"])
    writes, points = load.rates("writeReq"), load.rates("pointsWrittenOK")
    return {
        "max_rate": max_rate,
        "seconds": end - up,
        "p50_gateway": statistics.median(finish),
        "stored": count,
        "expected": expected,
        "requests": sum(1 for sent, _ in attempts if sent >= up),
        "failures": failures,
        "refused_while_down": sum(1 for sent, kind in attempts if kind and sent < up),
        "first_p50": statistics.median(first),
        "first_last": first[-1],
        "writes_peak": max(writes, default=0.0),
        "writes_mean": sum(1 for sent, _ in attempts if sent >= up) / (end - up),
        "points_peak": max(points, default=0.0),
        "points_mean": count / (end - up),
        "active_peak": load.active_peak,
        "server_errors": load.samples[-1][1]["serverError"] - base["serverError"],
        "cpu": cpu,
        "rss": rss,
        "heap": load.heap_peak / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=200)
    parser.add_argument("--hours", type=float, default=1.0, help="backlog per gateway")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument(
        "--max-rate", type=int, nargs="+", default=[0, 500], help="lines/s per gateway; 0: none"
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=0.0,
        help="seconds influxd is down while the drainers already try (0: released at once)",
    )
    parser.add_argument(
        "--backoff-max", type=float, default=60.0, help="the drainers' backoff cap (a sink's: 60)"
    )
    args = parser.parse_args()
    per_gateway = int(args.hours * 3600 * GATEWAY_RATE)
    expected = per_gateway * args.gateways
    print(
        f"fleet bench: {args.gateways} gateways x {args.hours:g} h backlog at {GATEWAY_RATE} "
        f"entries/s = {per_gateway:,} each, {expected:,} in all; {args.processes} processes; "
        + (
            f"influxd down for {args.outage:g} s while the drainers back off (capped at "
            f"{args.backoff_max:g} s, jittered), released by their own retries"
            if args.outage
            else "every drainer released at once on a fresh influxd"
        )
        + " (5,000-line batches, gzip)"
    )
    ctx = mp.get_context("spawn")
    shares = [list(range(args.gateways))[i :: args.processes] for i in range(args.processes)]
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp:
        pipes, procs = [], []
        started = time.perf_counter()
        for share in shares:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(share, args.hours, tmp, child), daemon=True)
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        for pipe in pipes:
            if pipe.recv() != "filled":
                raise SystemExit("a worker did not fill its outboxes")
        print(f"outboxes filled in {time.perf_counter() - started:.0f} s (not measured below)")
        runs = []
        for max_rate in args.max_rate:
            run = one_run(pipes, max_rate, expected, args.outage, args.backoff_max)
            runs.append(run)
            limit = (
                f"{max_rate:,} lines/s per gateway ({max_rate * args.gateways:,}/s in all)"
                if max_rate
                else "unlimited"
            )
            failed = ", ".join(f"{k}: {v}" for k, v in sorted(run["failures"].items())) or "none"
            print(
                f"\nmax_rate {limit}:\n"
                f"  all {run['stored']:,} of {run['expected']:,} points stored "
                f"{run['seconds']:.1f} s after the release "
                f"(half the gateways done by {run['p50_gateway']:.1f} s)\n"
                + (
                    f"  {run['refused_while_down']:,} attempts refused while influxd was down; "
                    f"each gateway's first stored batch after it returned: median "
                    f"{run['first_p50']:.1f} s, last {run['first_last']:.1f} s\n"
                    if args.outage
                    else ""
                )
                + f"  influxd: peak {run['writes_peak']:,.0f} writes/s and "
                f"{run['points_peak']:,.0f} points/s (mean {run['writes_mean']:,.0f} and "
                f"{run['points_mean']:,.0f}), at most {run['active_peak']:.0f} writes in flight, "
                f"CPU {run['cpu']:.0f} s, peak RSS {run['rss']:.0f} MB\n"
                f"  {run['requests']:,} write requests; failed writes: {failed} "
                f"(influxd counted {run['server_errors']:.0f} server errors)"
            )
            if run["stored"] != expected:
                raise SystemExit(f"lost points: {run['stored']:,} of {expected:,} stored")
        for pipe in pipes:
            pipe.send(None)
        for proc in procs:
            proc.join(30)
    print(
        "\ntargets: every point stored, no failed write, and a catch-up load that the "
        "central server's capacity bounds (gateways x max_rate), not the number of gateways"
    )


if __name__ == "__main__":
    main()
