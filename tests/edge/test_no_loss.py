"""Acceptance: no reading the gateway accepted is lost or doubled on its way to InfluxDB —
not when the database is down for a while, not when the gateway is killed mid-drain, and the
outbox stays within its bound when the database is unreachable."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge import schema
from edge.config import InfluxV1Sink
from edge.outbox import Outbox
from edge.reading import Reading
from edge.sink import Drainer, InfluxV1Writer
from tests.services import Influxd, free_port

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


def seq_reading(i: int) -> Reading:
    return Reading(
        branch="b",
        device="seq",
        measurement=schema.OCCUPANCY,
        fields={"entered": i},
        time=T0 + timedelta(milliseconds=i),
    )


def sequence_numbers(influxd: Influxd, db: str) -> list[int]:
    rows = influxd.rows("SELECT entered FROM occupancy WHERE device = 'seq'", db)
    return [int(value) for _, value in rows]


def test_readings_flow_through_a_database_outage(
    influxd: Influxd, influx_db: str, tmp_path: Path
) -> None:
    writer = InfluxV1Writer(
        InfluxV1Sink(type="influxdb_v1", url=influxd.url, database=influx_db), timeout=2
    )
    outbox = Outbox(tmp_path / "o.db", sinks=[writer.name])
    drainer = Drainer(
        outbox=outbox, writer=writer, batch_size=500, flush_interval=0.05, backoff_max=0.3
    )
    total = 3000

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(drainer.run(stop))
        for i in range(0, total, 50):
            outbox.append([seq_reading(j) for j in range(i, i + 50)])
            if i == 1000:
                await asyncio.to_thread(influxd.stop)
            if i == 2000:
                assert outbox.depth(writer.name) > 0  # held while the database is down
                await asyncio.to_thread(influxd.start)
            await asyncio.sleep(0.01)
        for _ in range(300):
            if outbox.depth(writer.name) == 0:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(main())
    assert drainer.stats.retries > 0
    seen = sequence_numbers(influxd, influx_db)
    assert len(seen) == total
    assert sorted(seen) == list(range(total))  # every number exactly once


def test_sigkill_mid_drain_loses_and_doubles_nothing(
    influxd: Influxd, influx_db: str, tmp_path: Path
) -> None:
    path, total = str(tmp_path / "o.db"), 20_000
    cmd = [sys.executable, "-m", "tests.edge.drain_child", path, influxd.url, influx_db, str(total)]
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == f"committed {total}"
    drained = 0
    while drained < 2000:  # let it get well into draining, then kill it mid-flight
        drained = int(child.stdout.readline().split()[1])
    child.kill()
    child.wait()
    child.stdout.close()
    assert drained < total
    restart = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
    assert restart.stdout.splitlines()[0] == f"committed {total}"
    seen = sequence_numbers(influxd, influx_db)
    assert len(seen) == total
    assert sorted(seen) == list(range(total))


def test_outbox_holds_its_bound_while_the_database_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    writer = InfluxV1Writer(InfluxV1Sink(type="influxdb_v1", url=url, database="d"))
    alerts: list[tuple[str, str, bool]] = []
    drops: list[int] = []
    outbox = Outbox(
        tmp_path / "o.db",
        max_bytes=1_000_000,
        sinks=[writer.name],
        on_drop=lambda n, _why: drops.append(n),
    )
    drainer = Drainer(
        outbox=outbox,
        writer=writer,
        backoff_min=0.01,
        backoff_max=0.05,
        on_alert=lambda *a: alerts.append(a),
    )
    sizes: list[int] = []

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(drainer.run(stop))
        for i in range(0, 30_000, 500):
            outbox.append([seq_reading(j) for j in range(i, i + 500)])
            sizes.append(outbox.live_bytes())
            await asyncio.sleep(0)
        stop.set()
        await task

    asyncio.run(main())
    assert max(sizes) <= 1_000_000 * 1.05  # checked every 2 % of the bound
    assert sizes[-1] <= 1_000_000
    assert outbox.dropped > 0
    assert sum(drops) == outbox.dropped
    assert alerts[0][0] == "sink_down"
    assert alerts[0][2] is True
