"""A gateway feeding two InfluxDB servers (a shard's pair, docs/SCALE.md): one is down for an
hour of the branch's time; the other stays complete, the first catches up from the outbox when
it returns, and at the end both hold the same points. Two real influxd, a real gateway on a
scaled clock; the device is a stub people counter (tests/support/sources.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.device import PollResult
from openbranch.edge.core.reading import Reading
from openbranch.edge.core.registry import BuildContext
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.edge.telemetry.sink import sink_name
from tests.conftest import start_or_fail
from tests.services import Influxd
from tests.support.sources import StubDriver, StubSource, registry_of
from tests.support.waiting import until

SPEED = 900.0  # an hour of the branch's time in 4 s
START = datetime(2026, 11, 25, 9, tzinfo=UTC)


class Counter(StubSource):
    """A people counter read every 30 s of the branch's time."""

    def __init__(self, device_id: str, context: BuildContext) -> None:
        super().__init__(device_id, context)
        self._clock = context.clock
        self.polls = 0

    def intervals(self) -> Mapping[str, float]:
        return {"default": 30.0}

    async def poll(self, groups: Collection[str]) -> PollResult:
        self.polls += 1
        fields = {schema.OCCUPANCY_ENTERED.key: self.polls, schema.OCCUPANCY_EXITED.key: 0}
        reading = Reading(
            branch="pair",
            device=self._id,
            measurement=schema.OCCUPANCY,
            fields=fields,
            time=self._clock.now(),
        )
        return PollResult(readings=(reading,))


@pytest.fixture(scope="module")
def second_influxd() -> Iterator[Influxd]:
    server = start_or_fail(Influxd)
    yield server
    server.close()


def points(server: Influxd, db: str) -> list[list[object]]:
    return server.rows(
        f'SELECT "{schema.OCCUPANCY_ENTERED.key}" FROM "{schema.OCCUPANCY.name}"'
        " WHERE device = 'counter'",
        db,
    )


def test_one_of_two_influxd_down_for_an_hour_then_both_equal(
    tmp_path: Path, influxd: Influxd, influx_db: str, second_influxd: Influxd
) -> None:
    second_influxd.start()
    second_influxd.query(f'CREATE DATABASE "{influx_db}"')
    transport = {"type": "modbus_tcp", "host": "127.0.0.1", "port": 1, "unit_id": 1}
    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "pair", "name": "Two databases"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "sinks": [
                {"type": "influxdb_v1", "url": influxd.url, "database": influx_db},
                {"type": "influxdb_v1", "url": second_influxd.url, "database": influx_db},
            ],
            "devices": [
                {
                    "id": "counter",
                    "profile": "moxa-iologik-e1210-counter",
                    "transport": transport,
                }
            ],
        }
    )
    up, down = (sink_name(s) for s in config.sinks)
    clock = ScaledClock(start=START, speed=SPEED)
    outbox = open_outbox(config)
    gateway = Gateway(
        config=config,
        registry=registry_of(StubDriver(Counter)),
        clock=clock,
        outbox=outbox,
        extensions=[],
    )
    for drainer in gateway.drainers:  # the gateway's backoff, in the branch's time
        drainer.backoff_min, drainer.backoff_max = 1 / SPEED, 60 / SPEED
        drainer.flush_interval = 1 / SPEED * 60
    active = gateway.journal.active

    async def main() -> tuple[int, int]:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await until(lambda: bool(points(second_influxd, influx_db)), 20, "first points")
            await asyncio.to_thread(second_influxd.stop)
            went_down, before = clock.now(), len(points(influxd, influx_db))
            await until(lambda: f"sink_down:{down}" in active, 20, "the second sink's alert")
            await until(lambda: clock.now() - went_down >= timedelta(hours=1), 20, "an hour")
            await until(lambda: outbox.depth(up) == 0, 20, "the first database complete")
            during = len(points(influxd, influx_db)) - before
            held = outbox.depth(down)  # everything of the hour, kept for the second
            await asyncio.to_thread(second_influxd.start)
            await until(lambda: outbox.depth(down) == 0, 30, "the second caught up")
            await until(lambda: f"sink_down:{down}" not in active, 20, "its alert cleared")
        finally:
            stop.set()
            await task
        return held, during

    held, during = asyncio.run(main())
    assert during >= 30  # the hour's counts (one every 30 s; a loaded machine skips some)
    assert held >= during  # ... and the health readings and alerts of the hour
    assert outbox.depth(up) == outbox.depth(down) == 0
    first, second = points(influxd, influx_db), points(second_influxd, influx_db)
    assert len(first) >= during
    assert first == second  # the same points, time and value
    measurements = 'SHOW MEASUREMENTS ON "{}"'
    everything = "SELECT count(*) FROM /.*/"
    assert influxd.query(measurements.format(influx_db)) == second_influxd.query(
        measurements.format(influx_db)
    )
    assert influxd.query(everything, influx_db) == second_influxd.query(everything, influx_db)
    outbox.close()
