"""Drain an outbox of 1,000,000 readings into a real influxd, against the plain-upload ceiling.

Prints points/s for the gateway's drainer (outbox -> InfluxV1Writer, 5,000-line batches) and
for a plain HTTP client posting the same line protocol, gzip'd, in 5,000-line batches to
/write (the ceiling), and their ratio. Each run writes into a fresh database of a private
influxd started for the benchmark.

    .venv/bin/python bench/drain.py [--readings 1000000]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from edge.config import InfluxV1Sink
from edge.devservers import Influxd
from edge.outbox import Outbox
from edge.sink import Drainer, InfluxV1Writer

T0_NS = 1_795_521_600 * 10**9  # 2026-11-24 12:00 UTC
BATCH = 5000


def make_lines(n: int) -> list[tuple[int, str, str, int, str]]:
    """Realistic rows: energy and occupancy readings of 40 devices, one second apart."""
    rows = []
    for i in range(n):
        device = f"dev-{i % 40:02d}"
        t = T0_NS + (i // 40) * 10**9
        if i % 2:
            line = (
                f"energy,branch=b{i % 7},carrier=electricity,device={device} "
                f"power_w={1000 + i % 977}.5,register={i * 0.01:.2f} {t}"
            )
            rows.append((t, "energy", device, 0, line))
        else:
            line = f"occupancy,branch=b{i % 7},device={device} entered={i}i,exited={i // 2}i {t}"
            rows.append((t, "occupancy", device, 0, line))
    return rows


def drain(
    influxd: Influxd, db: str, rows: list[tuple[int, str, str, int, str]], tmp: Path
) -> float:
    writer = InfluxV1Writer(InfluxV1Sink(type="influxdb_v1", url=influxd.url, database=db))
    outbox = Outbox(tmp / "outbox.db", max_bytes=2**40, sinks=[writer.name])
    for i in tqdm(range(0, len(rows), 20_000), desc="filling outbox", unit="batch", leave=False):
        outbox.append_rows(rows[i : i + 20_000])
    drainer = Drainer(outbox=outbox, writer=writer, batch_size=BATCH)
    t0 = time.perf_counter()
    with tqdm(total=len(rows), desc="drainer", unit="pt", leave=False) as bar:
        while handled := drainer.drain_once():
            bar.update(handled)
    elapsed = time.perf_counter() - t0
    assert outbox.depth(writer.name) == 0
    outbox.close()
    writer.close()
    return len(rows) / elapsed


def plain(influxd: Influxd, db: str, rows: list[tuple[int, str, str, int, str]]) -> float:
    lines = [r[4] for r in rows]
    conn = http.client.HTTPConnection(influxd.host, influxd.port, timeout=60)
    t0 = time.perf_counter()
    for i in tqdm(range(0, len(lines), BATCH), desc="plain upload", unit="batch", leave=False):
        body = gzip.compress("\n".join(lines[i : i + BATCH]).encode())
        conn.request(
            "POST",
            f"/write?db={db}&precision=n",
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
        )
        response = conn.getresponse()
        response.read()
        if response.status != 204:
            raise RuntimeError(f"plain upload: {response.status}")
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(lines) / elapsed


def count(influxd: Influxd, db: str) -> int:
    rows = influxd.rows("SELECT count(power_w) FROM energy", db)
    rows += influxd.rows("SELECT count(entered) FROM occupancy", db)
    return sum(int(r[1]) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    args = parser.parse_args()
    rows = make_lines(args.readings)
    with Influxd() as influxd, tempfile.TemporaryDirectory() as tmp:
        for db in ("bench_drain", "bench_plain"):
            influxd.query(f'CREATE DATABASE "{db}"')
        ceiling = plain(influxd, "bench_plain", rows)
        ours = drain(influxd, "bench_drain", rows, Path(tmp))
        stored = count(influxd, "bench_drain"), count(influxd, "bench_plain")
    print(f"readings: {args.readings:,} (stored: drainer {stored[0]:,}, plain {stored[1]:,})")
    print(f"drainer (outbox -> influxd, {BATCH}-line batches, gzip): {ours:,.0f} points/s")
    print(f"plain HTTP upload ({BATCH}-line batches, gzip):        {ceiling:,.0f} points/s")
    print(f"drainer / plain = {ours / ceiling:.2f}  (target >= 0.5)")


if __name__ == "__main__":
    main()
