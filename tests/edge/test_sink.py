"""Sinks against real servers: influxd (v1 write API) and VictoriaMetrics (/api/v2/write).

Status classification (401, 413, 429 with Retry-After, 500) is checked against a real HTTP
server from the standard library that answers fixed statuses, because influxd cannot be made
to return them on demand.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge import schema
from edge.config import InfluxV1Sink, InfluxV2Sink
from edge.outbox import Outbox
from edge.reading import Reading
from edge.sink import (
    Drainer,
    InfluxV1Writer,
    InfluxV2Writer,
    Rejected,
    Retryable,
    TooLarge,
    Unauthorized,
)
from tests.services import Influxd, VictoriaMetrics, free_port

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


def counter(i: int, device: str = "c1") -> Reading:
    return Reading(
        branch="b",
        device=device,
        measurement=schema.OCCUPANCY,
        fields={"entered": i},
        time=T0 + timedelta(seconds=i),
    )


def v1(influxd: Influxd, db: str) -> InfluxV1Writer:
    return InfluxV1Writer(InfluxV1Sink(type="influxdb_v1", url=influxd.url, database=db))


def test_v1_writer_stores_a_batch(influxd: Influxd, influx_db: str) -> None:
    writer = v1(influxd, influx_db)
    writer.write([counter(i).to_line() for i in range(100)])
    rows = influxd.rows("SELECT count(entered), sum(entered) FROM occupancy", influx_db)
    assert rows[0][1:] == [100, sum(range(100))]


def test_v2_writer_stores_a_batch_in_victoria_metrics(victoria_metrics: VictoriaMetrics) -> None:
    writer = InfluxV2Writer(
        InfluxV2Sink(type="influxdb_v2", url=victoria_metrics.url, org="o", bucket="b")
    )
    writer.write([counter(i, device="v2dev").to_line() for i in range(50)])
    series = victoria_metrics.export('{__name__="occupancy_entered",device="v2dev"}')
    assert len(series) == 1
    assert series[0]["values"] == list(range(50))
    assert series[0]["timestamps"][0] == int(T0.timestamp() * 1000)


def test_poison_line_is_dead_lettered_and_the_rest_flows(
    influxd: Influxd, influx_db: str, tmp_path: Path
) -> None:
    influxd.write("occupancy,branch=b,device=c1 entered=1i 1\n", influx_db)  # entered is int
    writer = v1(influxd, influx_db)
    box = Outbox(tmp_path / "o.db", sinks=[writer.name])
    good = [counter(i).to_line() for i in range(10, 20)]
    poison = 'occupancy,branch=b,device=c1 entered="seven" 1795521605500000000'
    rows = [(0, "occupancy", "c1", 0, line) for line in [*good[:5], poison, *good[5:]]]
    box.append_rows(rows)
    drainer = Drainer(outbox=box, writer=writer, batch_size=100)
    assert drainer.drain_once() == 11
    assert influxd.rows("SELECT count(entered) FROM occupancy", influx_db)[0][1] == 11
    ((_, seq, line, error),) = box.dead_letters(writer.name)
    assert line == poison
    assert seq == 6
    assert "field type conflict" in error
    assert box.depth(writer.name) == 0
    box.append([counter(30)])  # the next batch flows
    assert drainer.drain_once() == 1
    assert influxd.rows("SELECT count(entered) FROM occupancy", influx_db)[0][1] == 12


class _Fixed(http.server.BaseHTTPRequestHandler):
    status = 204
    headers_out: dict[str, str] = {}  # noqa: RUF012

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        for k, v in self.headers_out.items():
            self.send_header(k, v)
        body = b'{"error":"nope"}'
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def fixed_server() -> Iterator[tuple[str, type[_Fixed]]]:
    handler = type("Handler", (_Fixed,), {"headers_out": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (400, {}, Rejected),
        (422, {}, Rejected),
        (413, {}, TooLarge),
        (401, {}, Unauthorized),
        (403, {}, Unauthorized),
        (429, {"Retry-After": "7"}, Retryable),
        (500, {}, Retryable),
        (503, {"Retry-After": "3"}, Retryable),
    ],
)
def test_status_classification(
    fixed_server: tuple[str, type[_Fixed]],
    version: str,
    status: int,
    headers: dict[str, str],
    error: type[Exception],
) -> None:
    url, handler = fixed_server
    handler.status = status
    handler.headers_out = headers
    writer = (
        InfluxV1Writer(InfluxV1Sink(type="influxdb_v1", url=url, database="d"))
        if version == "v1"
        else InfluxV2Writer(InfluxV2Sink(type="influxdb_v2", url=url, bucket="b", org="o"))
    )
    with pytest.raises(error) as info:
        writer.write([counter(1).to_line()])
    if "Retry-After" in headers:
        assert getattr(info.value, "retry_after", None) == float(headers["Retry-After"])


def test_refused_connection_is_retryable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for writer in (
        InfluxV1Writer(InfluxV1Sink(type="influxdb_v1", url=url, database="d")),
        InfluxV2Writer(InfluxV2Sink(type="influxdb_v2", url=url, bucket="b", org="o")),
    ):
        with pytest.raises(Retryable):
            writer.write([counter(1).to_line()])


def test_unauthorized_keeps_everything_and_alerts(
    fixed_server: tuple[str, type[_Fixed]], tmp_path: Path
) -> None:
    url, handler = fixed_server
    handler.status = 401
    writer = InfluxV1Writer(InfluxV1Sink(type="influxdb_v1", url=url, database="d"))
    box = Outbox(tmp_path / "o.db", sinks=[writer.name])
    box.append([counter(i) for i in range(5)])
    alerts: list[tuple[str, str, bool]] = []
    drainer = Drainer(
        outbox=box, writer=writer, backoff_max=0.05, on_alert=lambda *a: alerts.append(a)
    )

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(drainer.run(stop))
        await asyncio.sleep(0.5)
        stop.set()
        await task

    asyncio.run(main())
    assert box.depth(writer.name) == 5
    assert alerts[0][0] == "sink_unauthorized"
    assert alerts[0][2] is True
    assert drainer.stats.retries >= 2
