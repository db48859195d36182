"""Sinks against real servers: influxd (the v1 write API, auth included) and VictoriaMetrics
(/api/v2/write; Debian's influxd 1.6 has no v2 API).

Answers influxd cannot be made to give on demand (413, 429 with Retry-After, 500, 503, a slow
answer) come from a real HTTP server of the standard library on a free loopback port, which
answers the writers' real requests with the status a test sets; it also records the lines it
received (gunzipped) so tests can check what a drainer sent.
"""

from __future__ import annotations

import asyncio
import gzip
import http.server
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.config import InfluxV1Sink, InfluxV2Sink, SecretRef
from openbranch.edge.core.reading import Reading
from openbranch.edge.telemetry.outbox import Outbox
from openbranch.edge.telemetry.sink import (
    Drainer,
    InfluxV1Writer,
    InfluxV2Writer,
    Rejected,
    Retryable,
    SinkError,
    TooLarge,
    Unauthorized,
    Writer,
)
from tests.services import Influxd, VictoriaMetrics, free_port
from tests.support.waiting import until

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


def counter(i: int, device: str = "c1") -> Reading:
    return Reading(
        branch="b",
        device=device,
        measurement=schema.OCCUPANCY,
        fields={"entered": i},
        time=T0 + timedelta(seconds=i),
    )


@pytest.fixture
def closing() -> Iterator[Callable[[Writer], Writer]]:
    """Close every writer a test opens (an open pool would be a ResourceWarning)."""
    opened: list[Writer] = []

    def track(writer: Writer) -> Writer:
        opened.append(writer)
        return writer

    yield track
    for writer in opened:
        writer.close()


def v1_config(url: str, db: str, **kw: object) -> InfluxV1Sink:
    return InfluxV1Sink.model_validate({"type": "influxdb_v1", "url": url, "database": db, **kw})


def v2_config(url: str) -> InfluxV2Sink:
    return InfluxV2Sink(type="influxdb_v2", url=url, org="o", bucket="b")


def run_until(drainer: Drainer, done: Callable[[], bool], within: float = 5) -> None:
    """Run a drainer's loop until ``done()`` holds (failing after ``within`` seconds)."""

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(drainer.run(stop))
        try:
            await until(done, within=within)
        finally:
            stop.set()
            await task

    asyncio.run(main())


# -- real databases ---------------------------------------------------------------------------


def test_v1_writer_stores_a_batch(influxd: Influxd, influx_db: str, closing: Callable) -> None:
    writer = closing(InfluxV1Writer(v1_config(influxd.url, influx_db)))
    writer.write([counter(i).to_line() for i in range(100)])
    rows = influxd.rows("SELECT count(entered), sum(entered) FROM occupancy", influx_db)
    assert rows[0][1:] == [100, sum(range(100))]
    writer.write([counter(i).to_line() for i in range(100)])  # a resend overwrites
    assert influxd.rows("SELECT count(entered) FROM occupancy", influx_db)[0][1] == 100


def test_v2_writer_stores_a_batch_in_victoria_metrics(
    victoria_metrics: VictoriaMetrics, closing: Callable
) -> None:
    writer = closing(InfluxV2Writer(v2_config(victoria_metrics.url)))
    writer.write([counter(i, device="v2dev").to_line() for i in range(50)])
    series = victoria_metrics.export('{__name__="occupancy_entered",device="v2dev"}')
    assert len(series) == 1
    assert series[0]["values"] == list(range(50))
    assert series[0]["timestamps"][0] == int(T0.timestamp() * 1000)


def test_poison_line_is_dead_lettered_and_the_rest_flows(
    influxd: Influxd, influx_db: str, tmp_path: Path, closing: Callable
) -> None:
    influxd.write("occupancy,branch=b,device=c1 entered=1i 1\n", influx_db)  # entered is int
    writer = closing(InfluxV1Writer(v1_config(influxd.url, influx_db)))
    box = Outbox(tmp_path / "o.db", sinks=[writer.name])
    good = [counter(i).to_line() for i in range(10, 20)]
    poison = 'occupancy,branch=b,device=c1 entered="seven" 1795521605500000000'
    box.append_lines([*good[:5], poison, *good[5:]])
    drainer = Drainer(outbox=box, writer=writer, batch_size=100)
    assert drainer.drain_once() == 11
    assert influxd.rows("SELECT count(entered) FROM occupancy", influx_db)[0][1] == 11
    (dead,) = box.dead_letters(writer.name)
    assert (dead.seq, dead.line) == (6, poison)
    assert "field type conflict" in dead.error  # the server's own message
    assert "entered" in dead.error
    assert box.depth(writer.name) == 0
    assert (drainer.stats.written, drainer.stats.dead_lettered) == (10, 1)
    assert dead.error.startswith("400: partial write")
    box.append([counter(30)])  # the next batch flows
    assert drainer.drain_once() == 1
    assert influxd.rows("SELECT count(entered) FROM occupancy", influx_db)[0][1] == 12
    box.append_lines([poison.replace("5500", "6500")])  # a batch that is only poison
    assert drainer.drain_once() == 1
    assert len(box.dead_letters(writer.name)) == 2
    assert box.depth(writer.name) == 0


@pytest.fixture(scope="module")
def secured_influxd() -> Iterator[Influxd]:
    """An influxd with auth enabled: admin/pw may write to db "d", reader/r may only read."""
    from tests.conftest import start_or_fail

    server = start_or_fail(lambda: Influxd(extra_http="  auth-enabled = true\n"))
    server.query("CREATE USER admin WITH PASSWORD 'pw' WITH ALL PRIVILEGES")
    for q in (
        'CREATE DATABASE "d"',
        "CREATE USER reader WITH PASSWORD 'r'",
        'GRANT READ ON "d" TO reader',
    ):
        server.query(q, u="admin", p="pw")
    yield server
    server.close()


@pytest.mark.parametrize(
    "case",
    [
        ("admin", "wrong", 401, "authorization failed"),
        (None, None, 401, "unable to parse authentication credentials"),
        ("reader", "r", 403, "not authorized to write"),
    ],
    ids=["wrong-password", "no-credentials", "read-only-user"],
)
def test_v1_credentials_refused_by_influxd(
    secured_influxd: Influxd,
    monkeypatch: pytest.MonkeyPatch,
    closing: Callable,
    case: tuple[str | None, str | None, int, str],
) -> None:
    user, password, status, says = case
    monkeypatch.setenv("TEST_INFLUX_PASSWORD", password or "")
    secret = {"password": SecretRef(env="TEST_INFLUX_PASSWORD")} if password else {}
    writer = closing(InfluxV1Writer(v1_config(secured_influxd.url, "d", username=user, **secret)))
    with pytest.raises(Unauthorized) as info:
        writer.write([counter(1).to_line()])
    assert info.value.status == status
    assert says in info.value.message


def test_v1_password_from_a_secret_writes(
    secured_influxd: Influxd, tmp_path: Path, closing: Callable
) -> None:
    (tmp_path / "pw").write_text("pw\n")
    config = v1_config(
        secured_influxd.url, "d", username="admin", password={"file": tmp_path / "pw"}
    )
    closing(InfluxV1Writer(config)).write([counter(7, device="auth").to_line()])
    rows = secured_influxd.query(
        "SELECT entered FROM occupancy WHERE device = 'auth'", "d", u="admin", p="pw"
    )["results"][0]["series"][0]["values"]
    assert [v for _, v in rows] == [7]


# -- answers influxd cannot give on demand ------------------------------------------------------


class Stub(http.server.ThreadingHTTPServer):
    """Answers every write with ``answer(lines) -> (status, headers)``; records the lines."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _StubHandler)
        self.answer: Callable[[list[str]], tuple[int, dict[str, str]]] = lambda _: (204, {})
        self.delay = 0.0
        self.requests: list[tuple[float, list[str]]] = []
        self.arrived = threading.Event()  # a write has come in (before its answer's delay)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def stored(self) -> list[str]:
        return [line for _, lines in self.requests for line in lines]


class _StubHandler(http.server.BaseHTTPRequestHandler):
    server: Stub

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        lines = body.decode().splitlines()
        self.server.arrived.set()
        time.sleep(self.server.delay)
        status, headers = self.server.answer(lines)
        if status == 204:
            self.server.requests.append((time.monotonic(), lines))
        payload = b"" if status == 204 else b'{"error":"stub says no"}'
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def writer_for(version: str, url: str, *, timeout: float = 30.0) -> Writer:
    if version == "v1":
        return InfluxV1Writer(v1_config(url, "d"), timeout=timeout)
    return InfluxV2Writer(v2_config(url), timeout=timeout)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize(
    "case",
    [
        (400, {}, Rejected),
        (422, {}, Rejected),
        (413, {}, TooLarge),
        (401, {}, Unauthorized),
        (403, {}, Unauthorized),
        (429, {"Retry-After": "7"}, Retryable),
        (500, {}, Retryable),
        (503, {"Retry-After": "3"}, Retryable),
        (404, {}, Retryable),  # no such database (yet): keep everything
    ],
    ids=lambda case: str(case[0]),
)
def test_status_classification(
    stub: Stub,
    closing: Callable,
    version: str,
    case: tuple[int, dict[str, str], type[SinkError]],
) -> None:
    status, headers, error = case
    stub.answer = lambda _: (status, headers)
    writer = closing(writer_for(version, stub.url))
    with pytest.raises(error) as info:
        writer.write([counter(1).to_line()])
    assert getattr(info.value, "status", None) == status
    if "Retry-After" in headers:
        assert getattr(info.value, "retry_after", None) == float(headers["Retry-After"])
    if isinstance(info.value, Rejected):
        assert info.value.message == "stub says no"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_refused_connections_and_timeouts_are_retryable(
    stub: Stub, closing: Callable, version: str
) -> None:
    refused = closing(writer_for(version, f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(Retryable) as info:
        refused.write([counter(1).to_line()])
    assert info.value.status is None
    stub.delay = 0.6
    slow = closing(writer_for(version, stub.url, timeout=0.2))
    with pytest.raises(Retryable):
        slow.write([counter(1).to_line()])


def test_too_large_batches_are_split_until_they_pass(
    stub: Stub, tmp_path: Path, closing: Callable
) -> None:
    stub.answer = lambda lines: (413, {}) if len(lines) > 30 else (204, {})
    writer = closing(InfluxV1Writer(v1_config(stub.url, "d")))
    box = Outbox(tmp_path / "o.db", sinks=[writer.name])
    box.append([counter(i) for i in range(100)])
    drainer = Drainer(outbox=box, writer=writer, batch_size=100)
    assert drainer.drain_once() == 100
    assert stub.stored == [counter(i).to_line() for i in range(100)]  # all, in order, once
    assert max(len(lines) for _, lines in stub.requests) <= 30
    assert box.depth(writer.name) == 0
    assert box.dead_letters() == []


def test_retry_after_is_honored(stub: Stub, tmp_path: Path, closing: Callable) -> None:
    answers = iter([(429, {"Retry-After": "1"})])
    stub.answer = lambda _: next(answers, (204, {}))
    writer = closing(InfluxV1Writer(v1_config(stub.url, "d")))
    box = Outbox(tmp_path / "o.db", sinks=[writer.name])
    box.append([counter(1)])
    drainer = Drainer(outbox=box, writer=writer, backoff_min=0.01, backoff_max=5)
    started = time.monotonic()
    run_until(drainer, lambda: bool(stub.requests))
    assert stub.requests[0][0] - started >= 0.95  # it waited as told, not backoff_min
    assert drainer.stats.retries == 1
    assert "429" in drainer.stats.last_error


def test_unauthorized_keeps_everything_alerts_and_recovers(
    stub: Stub, tmp_path: Path, closing: Callable
) -> None:
    stub.answer = lambda _: (401, {})
    writer = closing(InfluxV1Writer(v1_config(stub.url, "d")))
    box = Outbox(tmp_path / "o.db", sinks=[writer.name])
    box.append([counter(i) for i in range(5)])
    alerts: list[tuple[str, str, bool]] = []
    drainer = Drainer(
        outbox=box,
        writer=writer,
        backoff_max=0.05,
        flush_interval=0.01,
        on_alert=lambda *a: alerts.append(a),
    )
    run_until(drainer, lambda: drainer.stats.retries >= 2)
    assert box.depth(writer.name) == 5
    assert drainer.stats.retries >= 2
    assert [(kind, active) for kind, _, active in alerts] == [("sink_unauthorized", True)]
    stub.answer = lambda _: (204, {})  # the operator fixed the password
    run_until(drainer, lambda: box.depth(writer.name) == 0)
    assert len(stub.stored) == 5
    assert [(kind, active) for kind, _, active in alerts][-1] == ("sink_unauthorized", False)


def test_a_dead_sink_does_not_hold_back_another(
    influxd: Influxd, influx_db: str, tmp_path: Path, closing: Callable
) -> None:
    live = closing(InfluxV1Writer(v1_config(influxd.url, influx_db)))
    dead = closing(InfluxV2Writer(v2_config(f"http://127.0.0.1:{free_port()}")))
    box = Outbox(tmp_path / "o.db", sinks=[live.name, dead.name])
    drainers = [
        Drainer(outbox=box, writer=w, batch_size=100, flush_interval=0.01, backoff_min=0.01)
        for w in (live, dead)
    ]

    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(d.run(stop)) for d in drainers]
        for i in range(0, 1000, 100):
            box.append([counter(j, device="two") for j in range(i, i + 100)])
            await asyncio.sleep(0.01)
        await until(lambda: box.depth(live.name) == 0, what="the live sink drained")
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert box.depth(live.name) == 0
    assert box.depth(dead.name) == 1000  # kept for when it comes back
    assert drainers[1].lag_s(now_ns=counter(0).time_ns + 60 * 10**9) == 60.0
    assert drainers[0].lag_s() == 0.0
    rows = influxd.rows("SELECT count(entered) FROM occupancy WHERE device = 'two'", influx_db)
    assert rows[0][1] == 1000


def test_stop_lets_the_write_in_flight_finish(
    stub: Stub, tmp_path: Path, closing: Callable
) -> None:
    stub.delay = 0.5
    writer = closing(InfluxV1Writer(v1_config(stub.url, "d")))
    box = Outbox(tmp_path / "o.db", sinks=[writer.name])
    box.append([counter(i) for i in range(10)])
    drainer = Drainer(outbox=box, writer=writer)

    async def main() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(drainer.run(stop))
        assert await asyncio.to_thread(stub.arrived.wait, 5)  # the write is in flight
        stop.set()
        began = time.monotonic()
        await task
        return time.monotonic() - began

    waited = asyncio.run(main())
    assert 0.2 < waited < 2
    assert len(stub.stored) == 10
    assert box.depth(writer.name) == 0  # stored and acked, not abandoned


class _Flaky:
    """A writer that fails ``times`` times with an error outside the SinkError hierarchy (a
    bug)."""

    name = "flaky"

    def __init__(self, times: int = 1) -> None:
        self.calls = 0
        self.times = times
        self.stored: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.calls += 1
        if self.calls <= self.times:
            raise RuntimeError("surprise")
        self.stored.extend(lines)

    def close(self) -> None:
        pass


def test_an_unexpected_error_does_not_stop_the_drainer(tmp_path: Path) -> None:
    writer = _Flaky()
    box = Outbox(tmp_path / "o.db", sinks=[writer.name])
    box.append([counter(i) for i in range(3)])
    alerts: list[tuple[str, str, bool]] = []
    drainer = Drainer(
        outbox=box, writer=writer, backoff_min=0.01, on_alert=lambda *a: alerts.append(a)
    )
    run_until(drainer, lambda: box.depth(writer.name) == 0)
    assert len(writer.stored) == 3
    assert "RuntimeError: surprise" in drainer.stats.last_error
    assert [(kind, active) for kind, _, active in alerts] == [
        ("sink_down", True),
        ("sink_down", False),
    ]


def test_an_unexpected_error_in_a_row_logs_its_traceback_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen in the 30-day soak: with the store read-only, every retry logged a whole
    traceback (a dozen a second at the soak's speed; one a second to a minute for hours on a
    branch). The first of a row is logged with its traceback, the rest are counted."""
    writer = _Flaky(times=5)
    box = Outbox(tmp_path / "o.db", sinks=[writer.name])
    box.append([counter(i) for i in range(3)])
    drainer = Drainer(outbox=box, writer=writer, backoff_min=0.001, backoff_max=0.002)
    with caplog.at_level(logging.WARNING, logger="openbranch.edge.telemetry.sink"):
        run_until(drainer, lambda: box.depth(writer.name) == 0)
    assert writer.calls == 6
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in tracebacks] == ["flaky: unexpected error while draining"]
    assert "flaky: writing again after 5 failed attempts" in caplog.messages


def test_a_store_that_refuses_the_ack_stalls_the_sink_and_does_not_call_it_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen in the 30-day soak: with the store's file system read-only, each drainer wrote its
    batch, failed to ack it, and raised ``sink_down`` ("no answer: OperationalError"): the
    dashboards blamed a database that had answered. Here the drainer's store refuses writes
    (opened read-only beside the one that appended): ``sink_stalled``, naming the store."""
    writer = _Flaky(times=0)
    Outbox(tmp_path / "o.db", sinks=[writer.name]).append([counter(i) for i in range(3)])
    refusing = Outbox(tmp_path / "o.db", read_only=True)
    alerts: list[tuple[str, str, bool]] = []
    drainer = Drainer(
        outbox=refusing,
        writer=writer,
        backoff_min=0.001,
        backoff_max=0.002,
        on_alert=lambda *a: alerts.append(a),
    )
    with caplog.at_level(logging.WARNING, logger="openbranch.edge.telemetry.sink"):
        run_until(drainer, lambda: drainer.stats.retries >= 3)
    assert len(writer.stored) >= 3  # written, not acked: written again, one point each
    assert refusing.depth(writer.name) == 3  # all still pending
    assert [(kind, active) for kind, _, active in alerts] == [("sink_stalled", True)]
    assert alerts[0][1].startswith("flaky: the local store: OperationalError: ")
    assert "readonly" in alerts[0][1]
    assert not [r for r in caplog.records if r.exc_info]  # a known condition: no traceback
