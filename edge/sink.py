"""Sinks: drain the outbox into InfluxDB, one independent drainer per configured database.

Writers speak to one database: ``InfluxV1Writer`` through the ``influxdb`` library (InfluxDB
1.x and 3.x's v1 API), ``InfluxV2Writer`` through influxdb-client's synchronous write API
(InfluxDB 2.x, 3.x and 1.8+; its background batching writer is not used, because it keeps
data only in memory). Both send gzip'd line protocol with nanosecond timestamps and turn every
answer into one of the exceptions below.

Exceptions:
    SinkError          base
      Rejected         400/422: a bad line or a field type conflict; the batch is bisected
      TooLarge         413: the batch is split
      Unauthorized     401/403: everything is kept, an alert is raised, retried slowly
      Retryable        429, 5xx, timeouts, refused connections: back off, honor Retry-After
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlparse

import influxdb
import influxdb.exceptions
import requests
from influxdb_client.client.influxdb_client import InfluxDBClient as V2Client
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from edge.config import InfluxV1Sink, InfluxV2Sink, SinkConfig
from edge.outbox import Entry, Outbox

__all__ = [
    "Drainer",
    "DrainerStats",
    "InfluxV1Writer",
    "InfluxV2Writer",
    "Rejected",
    "Retryable",
    "SinkError",
    "TooLarge",
    "Unauthorized",
    "Writer",
    "make_writer",
    "sink_name",
]

log = logging.getLogger(__name__)

GZIP_LEVEL = 3  # line protocol compresses ~10x at level 3; level 9 costs 3x the CPU for ~1 % more


class SinkError(Exception):
    """A write that did not store its lines."""


class Rejected(SinkError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


class TooLarge(SinkError):
    pass


class Unauthorized(SinkError):
    pass


class Retryable(SinkError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


def _classify(status: int, message: str, retry_after: float | None) -> SinkError:
    if status in (400, 422):
        return Rejected(status, message)
    if status == 413:
        return TooLarge(message)
    if status in (401, 403):
        return Unauthorized(f"{status}: {message}")
    return Retryable(f"{status}: {message}", retry_after)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Writer(Protocol):
    name: str

    def write(self, lines: Sequence[str]) -> None: ...

    def close(self) -> None: ...


def sink_name(config: SinkConfig) -> str:
    """A stable name for the outbox cursor of a sink."""
    if isinstance(config, InfluxV1Sink):
        return f"influxdb_v1:{config.url.rstrip('/')}/{config.database}"
    return f"influxdb_v2:{config.url.rstrip('/')}/{config.org}/{config.bucket}"


class InfluxV1Writer:
    def __init__(self, config: InfluxV1Sink, *, timeout: float = 30.0) -> None:
        self.name = sink_name(config)
        url = urlparse(config.url)
        self._database = config.database
        self._last: requests.Response | None = None
        session = requests.Session()
        session.hooks["response"].append(self._remember)
        self._client = influxdb.InfluxDBClient(
            host=url.hostname or "localhost",
            port=url.port or (443 if url.scheme == "https" else 8086),
            username=config.username or "",
            password=config.password.resolve() if config.password else "",
            database=config.database,
            ssl=url.scheme == "https",
            verify_ssl=url.scheme == "https",
            path=url.path.strip("/"),
            timeout=timeout,
            retries=1,
            gzip=False,  # we compress ourselves: the library always uses level 9
            session=session,
        )

    def _remember(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self._last = response

    def write(self, lines: Sequence[str]) -> None:
        self._last = None
        body = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=GZIP_LEVEL)
        try:
            self._client.request(
                url="write",
                method="POST",
                params={"db": self._database, "precision": "n"},
                data=body,
                expected_response_code=204,
                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
            )
        except influxdb.exceptions.InfluxDBClientError as exc:
            raise self._error(int(exc.code or 0), str(exc.content)) from exc
        except influxdb.exceptions.InfluxDBServerError as exc:
            status = self._last.status_code if self._last is not None else 500
            raise self._error(status, str(exc)) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Retryable(f"{self.name}: {type(exc).__name__}") from exc

    def _error(self, status: int, message: str) -> SinkError:
        header = self._last.headers.get("Retry-After") if self._last is not None else None
        return _classify(status, message.strip(), _retry_after(header))

    def close(self) -> None:
        self._client.close()


class InfluxV2Writer:
    def __init__(self, config: InfluxV2Sink, *, timeout: float = 30.0) -> None:
        self.name = sink_name(config)
        self._bucket = config.bucket
        self._org = config.org
        self._client = V2Client(
            url=config.url,
            token=config.token.resolve() if config.token else "",
            org=config.org,
            enable_gzip=True,
            timeout=int(timeout * 1000),
            retries=False,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        try:
            self._api.write(
                bucket=self._bucket,
                org=self._org,
                record=list(lines),
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            headers: dict[str, str] = dict(exc.headers or {})
            raise _classify(
                int(exc.status or 0),
                str(exc.body or exc.reason),
                _retry_after(headers.get("Retry-After")),
            ) from exc
        except Exception as exc:  # urllib3 connection and timeout errors have no common base
            if type(exc).__module__.startswith(("urllib3", "socket", "ssl")) or isinstance(
                exc, OSError
            ):
                raise Retryable(f"{self.name}: {type(exc).__name__}: {exc}") from exc
            raise

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def make_writer(config: SinkConfig) -> Writer:
    if isinstance(config, InfluxV1Sink):
        return InfluxV1Writer(config)
    return InfluxV2Writer(config)


@dataclass(slots=True)
class DrainerStats:
    written: int = 0
    dead_lettered: int = 0
    batches: int = 0
    retries: int = 0
    last_error: str = ""
    last_latency_ms: float = 0.0


Alert = Callable[[str, str, bool], None]  # kind, message, active


class Drainer:
    """Drains one sink: take a batch, write it, ack it; bisect bad lines; back off on errors."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        writer: Writer,
        batch_size: int = 5000,
        flush_interval: float = 1.0,
        backoff_min: float = 0.5,
        backoff_max: float = 60.0,
        on_alert: Alert | None = None,
    ) -> None:
        self.outbox = outbox
        self.writer = writer
        self.name = writer.name
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.stats = DrainerStats()
        self._on_alert = on_alert
        self._failures = 0
        self._alerting: str | None = None

    def drain_once(self) -> int:
        """Write one batch (blocking). Returns how many entries it handled; raises SinkError.

        The common case sends the lines as they are; only a refused batch is loaded as
        entries and bisected.
        """
        last, lines = self.outbox.pending_lines(self.name, self.batch_size)
        if not lines:
            return 0
        t0 = time.perf_counter()
        try:
            self.writer.write(lines)
            self.stats.written += len(lines)
        except (Rejected, TooLarge):
            self._split(self.outbox.pending(self.name, len(lines)))
        self.stats.last_latency_ms = (time.perf_counter() - t0) * 1000
        self.outbox.ack(self.name, last)
        self.stats.batches += 1
        return len(lines)

    def _deliver(self, batch: Sequence[Entry]) -> None:
        try:
            self.writer.write([e.line for e in batch])
        except Rejected as exc:
            if len(batch) == 1:
                self.outbox.dead_letter(self.name, batch[0], exc.message)
                self.stats.dead_lettered += 1
                log.warning("%s: dead-lettered seq %d: %s", self.name, batch[0].seq, exc.message)
                return
            self._split(batch)
            return
        except TooLarge as exc:
            if len(batch) == 1:
                self.outbox.dead_letter(self.name, batch[0], f"413 too large: {exc}")
                self.stats.dead_lettered += 1
                return
            self._split(batch)
            return
        self.stats.written += len(batch)

    def _split(self, batch: Sequence[Entry]) -> None:
        half = len(batch) // 2
        self._deliver(batch[:half])
        self._deliver(batch[half:])

    def _delay(self, exc: SinkError) -> float:
        self._failures += 1
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, self.backoff_max)
        if isinstance(exc, Unauthorized):
            return self.backoff_max
        return float(min(self.backoff_min * 2 ** (self._failures - 1), self.backoff_max))

    def _alert(self, kind: str | None, message: str) -> None:
        if kind == self._alerting:
            return
        if self._on_alert is not None:
            if self._alerting is not None:
                self._on_alert(self._alerting, f"{self.name}: recovered", False)
            if kind is not None:
                self._on_alert(kind, message, True)
        self._alerting = kind

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until ``stop`` is set; an in-flight write finishes, the rest stays pending."""
        while not stop.is_set():
            try:
                handled = await asyncio.to_thread(self.drain_once)
            except SinkError as exc:
                delay = self._delay(exc)
                self.stats.retries += 1
                self.stats.last_error = str(exc)
                kind = "sink_unauthorized" if isinstance(exc, Unauthorized) else "sink_down"
                if self._failures == 1 or isinstance(exc, Unauthorized):
                    log.warning("%s: %s; retrying in %.1f s", self.name, exc, delay)
                self._alert(kind, f"{self.name}: {exc}")
                await _wait(stop, delay)
                continue
            if self._failures:
                log.warning("%s: writing again after %d failed attempts", self.name, self._failures)
                self._failures = 0
                self._alert(None, "")
            if handled < self.batch_size:
                await _wait(stop, self.flush_interval)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
