"""Drain an outbox of 1,000,000 readings into a real influxd, against the plain-upload ceiling.

The outbox holds realistic readings (energy meters and people counters, 40 devices, one reading
per device per second, nanosecond timestamps, serialised by ``Reading.to_line``). Measured:

- drainer: ``Drainer.run`` (the gateway's loop: worker thread, outbox cursor, InfluxV1Writer,
  5,000-line batches) from the first batch until the last is acknowledged;
- ceiling: the same line protocol posted with ``http.client`` in 5,000-line batches,
  gzip'd at the same level, over one keep-alive connection to /write?db=..&precision=n.

Each run writes into a fresh database of a private influxd (``edge.devservers.Influxd``, the
class ``tests/services.py`` re-exports); the two alternate for ``--rounds`` rounds, and the best
of each is compared, so neither profits from a warmer server.

    .venv/bin/python bench/drain.py [--readings 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import http.client
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from openbranch.edge.core import schema
from openbranch.edge.core.config import InfluxV1Sink
from openbranch.edge.core.reading import Reading
from openbranch.edge.demo.servers import Influxd
from openbranch.edge.telemetry.outbox import Outbox
from openbranch.edge.telemetry.sink import GZIP_LEVEL, Drainer, InfluxV1Writer

T0 = datetime(2026, 11, 24, 6, tzinfo=UTC)
DEVICES = 40
BATCH = 5000


def make_readings(n: int) -> list[Reading]:
    """Half energy meters, half people counters; each device reads once a second."""
    out = []
    for i in range(n):
        d, second = i % DEVICES, i // DEVICES
        when = T0 + timedelta(seconds=second, milliseconds=7 * d)
        if d % 2:
            kwh = 1000.0 + d * 100 + second * 0.0125
            fields: dict[str, float | int] = {
                "register": round(kwh, 3),
                "total": round(kwh, 3),
                "power_w": 40_000.0 + (second * 37 + d * 11) % 5000,
            }
            tags = {"carrier": "electricity"}
            measurement = schema.ENERGY
        else:
            entered = second // 7
            fields = {"entered": entered, "exited": entered - entered // 9, "present": entered // 9}
            tags = {}
            measurement = schema.OCCUPANCY
        out.append(
            Reading(
                branch="copenhagen-hovedbibliotek",
                device=f"dev-{d:02d}",
                measurement=measurement,
                fields=fields,
                tags=tags,
                time=when,
            )
        )
    return out


def drainer_rate(influxd: Influxd, db: str, outbox_path: Path, n: int) -> float:
    """Points/s of a Drainer taking every entry of the outbox into ``db``."""
    writer = InfluxV1Writer(InfluxV1Sink(type="influxdb_v1", url=influxd.url, database=db))
    outbox = Outbox(outbox_path, max_bytes=2**40, sinks=[writer.name])  # a fresh cursor
    drainer = Drainer(outbox=outbox, writer=writer, batch_size=BATCH)

    async def run() -> float:
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(drainer.run(stop))
        while True:
            await asyncio.sleep(0.002)
            if drainer.stats.written >= n:
                break
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        return elapsed

    elapsed = asyncio.run(run())
    assert outbox.depth(writer.name) == 0
    outbox.close()
    writer.close()
    return n / elapsed


def plain_rate(influxd: Influxd, db: str, lines: list[str]) -> float:
    """Points/s of a plain HTTP client posting the same lines (the ceiling)."""
    conn = http.client.HTTPConnection(influxd.host, influxd.port, timeout=60)
    started = time.perf_counter()
    for i in range(0, len(lines), BATCH):
        body = gzip.compress(("\n".join(lines[i : i + BATCH]) + "\n").encode(), GZIP_LEVEL)
        conn.request(
            "POST",
            f"/write?db={db}&precision=n",
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
        )
        response = conn.getresponse()
        response.read()
        if response.status != 204:
            raise RuntimeError(f"plain upload: {response.status}")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(lines) / elapsed


def stored(influxd: Influxd, db: str) -> int:
    rows = influxd.rows("SELECT count(power_w) FROM energy", db)
    rows += influxd.rows("SELECT count(entered) FROM occupancy", db)
    return sum(int(r[1]) for r in rows)


def fill(path: Path, readings: list[Reading]) -> float:
    started = time.perf_counter()
    with Outbox(path, max_bytes=2**40) as outbox:
        for i in range(0, len(readings), BATCH):
            outbox.append(readings[i : i + BATCH])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    n = args.readings
    readings = make_readings(n)
    lines = [r.to_line() for r in readings]
    print(f"drain bench: {n:,} readings (energy + occupancy, {DEVICES} devices, ns timestamps)")
    print(f"{BATCH:,}-line batches, gzip level {GZIP_LEVEL}, one fresh database per run")
    drained: list[float] = []
    plain: list[float] = []
    with Influxd() as influxd, tempfile.TemporaryDirectory() as tmp:
        outbox_path = Path(tmp) / "outbox.db"
        print(f"outbox filled in {fill(outbox_path, readings):.1f} s (not part of the rates)")
        size = outbox_path.stat().st_size
        print(f"outbox file: {size / 1e6:.0f} MB, {len(lines[1])} bytes a typical line")
        for rnd in range(1, args.rounds + 1):
            dbs = (f"plain_{rnd}", f"drain_{rnd}")
            for db in dbs:
                influxd.query(f'CREATE DATABASE "{db}"')
            plain.append(plain_rate(influxd, dbs[0], lines))
            drained.append(drainer_rate(influxd, dbs[1], outbox_path, n))
            counts = [stored(influxd, db) for db in dbs]
            print(
                f"round {rnd}: plain HTTP {plain[-1]:>9,.0f} points/s, "
                f"drainer {drained[-1]:>9,.0f} points/s  (stored {counts[0]:,} / {counts[1]:,})"
            )
            if counts != [n, n]:
                raise SystemExit(f"lost points: stored {counts}, expected {n:,} each")
    ours, ceiling = max(drained), max(plain)
    print(f"drainer (outbox -> Drainer -> influxd):   {ours:>9,.0f} points/s (best)")
    print(f"ceiling (plain http.client upload):       {ceiling:>9,.0f} points/s (best)")
    print(f"drainer / ceiling = {ours / ceiling:.2f}  (target >= 0.5)")


if __name__ == "__main__":
    main()
