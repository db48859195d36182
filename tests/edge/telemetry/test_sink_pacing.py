"""A drainer's pace: the per-sink rate limit (``max_rate``) and the jittered, capped retry
delays that keep a fleet catching up after a central outage from overloading the database
(bench/fleet.py measures the fleet; these pin the rules)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.config import GatewayConfig, InfluxV1Sink
from openbranch.edge.core.reading import Reading
from openbranch.edge.telemetry.outbox import Outbox
from openbranch.edge.telemetry.sink import Drainer, InfluxV1Writer, Retryable, Unauthorized
from tests.services import Influxd
from tests.support.waiting import until

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


class Timed:
    """A real writer, and when each of its requests started and how many lines it sent."""

    def __init__(self, writer: InfluxV1Writer) -> None:
        self.writer = writer
        self.name = writer.name
        self.requests: list[tuple[float, int]] = []

    def write(self, lines: Sequence[str]) -> None:
        self.requests.append((time.monotonic(), len(lines)))
        self.writer.write(lines)

    def close(self) -> None:
        self.writer.close()


class Nowhere:
    """A writer for drainers whose rules are checked without writing."""

    name = "nowhere"

    def write(self, lines: Sequence[str]) -> None:
        raise Retryable(None, "not connected")

    def close(self) -> None:
        pass


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "rules.db", sinks=[Nowhere.name]) as box:
        yield box


def readings(n: int) -> list[Reading]:
    return [
        Reading(
            branch="b",
            device="paced",
            measurement=schema.OCCUPANCY,
            fields={"entered": i},
            time=T0 + timedelta(seconds=i),
        )
        for i in range(n)
    ]


def test_a_backlog_is_sent_no_faster_than_max_rate(
    influxd: Influxd, influx_db: str, tmp_path: Path
) -> None:
    writer = Timed(
        InfluxV1Writer(InfluxV1Sink(type="influxdb_v1", url=influxd.url, database=influx_db))
    )
    box = Outbox(tmp_path / "o.db", sinks=[writer.name])
    box.append(readings(450))
    drainer = Drainer(outbox=box, writer=writer, batch_size=5000, max_rate=200)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(drainer.run(stop))
        await until(lambda: box.depth(writer.name) == 0, 30, "the backlog stored")
        stop.set()
        await task

    asyncio.run(main())
    writer.close()
    assert [n for _, n in writer.requests] == [200, 200, 50]  # a second's worth per request
    starts = [t for t, _ in writer.requests]
    # 200 lines a second: each request a second (or up to a fifth more) after the one before;
    # unpaced, the three would go within milliseconds (the margin is the outbox read's jitter)
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(starts))
    rows = influxd.rows("SELECT count(entered) FROM occupancy WHERE device = 'paced'", influx_db)
    assert rows[0][1] == 450  # paced, not dropped


def test_pace_and_batch_follow_max_rate(outbox: Outbox) -> None:
    unlimited = Drainer(outbox=outbox, writer=Nowhere(), batch_size=5000)
    assert (unlimited.batch, unlimited.pace(5000, 0.1)) == (5000, 0.0)
    paced = Drainer(outbox=outbox, writer=Nowhere(), batch_size=5000, max_rate=2000)
    assert paced.batch == 2000
    waits = [paced.pace(2000, 0.25) for _ in range(200)]  # a second per 2,000 lines, or more
    assert all(0.75 <= w <= 0.95 for w in waits)
    assert len({round(w, 4) for w in waits}) > 100  # gateways released together drift apart
    assert paced.pace(2000, 1.5) == 0.0  # a slow database already keeps it under the rate
    assert paced.pace(0, 0.0) == 0.0
    slow = Drainer(outbox=outbox, writer=Nowhere(), batch_size=100, max_rate=0.5)
    assert slow.batch == 1
    assert 2.0 <= slow.pace(1, 0.0) <= 2.4
    with pytest.raises(ValueError, match="max_rate must be positive"):
        Drainer(outbox=outbox, writer=Nowhere(), max_rate=0)


def test_retry_delays_are_jittered_and_capped(outbox: Outbox) -> None:
    drainers = [
        Drainer(outbox=outbox, writer=Nowhere(), backoff_min=1, backoff_max=60) for _ in range(200)
    ]
    told = [d.retry_delay(Retryable(503, "busy", retry_after=10)) for d in drainers]
    assert all(10 <= s <= 12.5 for s in told)  # as told, stretched by up to a quarter
    assert len({round(s, 3) for s in told}) > 100  # a fleet does not come back in one step
    capped = [d.retry_delay(Retryable(503, "busy", retry_after=3600)) for d in drainers]
    assert max(capped) == 60
    for d in drainers:  # ten failures in a row: exponential, capped at backoff_max, jittered
        d._failures = 10  # the count the loop keeps
    spread = [d.retry_delay(Retryable(None, "refused")) for d in drainers]
    assert all(30 <= s <= 60 for s in spread)
    assert len({round(s, 3) for s in spread}) > 100
    assert drainers[0].retry_delay(Unauthorized(401, "no")) == 60


def test_max_rate_in_a_gateway_config() -> None:
    base = {"branch": {"id": "b", "name": "B"}}
    sink = {"type": "influxdb_v1", "url": "http://central:8086", "database": "libraries"}
    config = GatewayConfig.model_validate({**base, "sinks": [{**sink, "max_rate": 2000}]})
    assert config.sinks[0].max_rate == 2000
    assert GatewayConfig.model_validate({**base, "sinks": [sink]}).sinks[0].max_rate is None
    with pytest.raises(ValueError, match=r"sinks\.0\.influxdb_v1\.max_rate") as refused:
        GatewayConfig.model_validate({**base, "sinks": [{**sink, "max_rate": 0}]})
    assert "0 is not in 1..10000000" in str(refused.value)
