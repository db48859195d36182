"""Sinks: drain the outbox into InfluxDB, one independent drainer per configured database.

Exceptions (every writer turns every failed answer into one of these)::

    SinkError            a write that did not store its lines
      Rejected           400/422: a bad line or a field type conflict -> bisect the batch
      TooLarge           413: the request body is too large -> split the batch
      Unauthorized       401/403: wrong or missing credentials -> keep everything, alert
      Retryable          429, 5xx, timeouts, refused connections -> back off, honor Retry-After

Writers speak to one database each and expose ``write(lines)``:

- ``InfluxV1Writer``: the v1 write API (InfluxDB 1.x, 3.x) through the ``influxdb`` library's
  client (its session, auth, TLS and error classes). It gzips the body itself at level 3: the
  library's own gzip is hard-coded to level 9, which costs more than half the throughput
  (see bench/drain.py) for 20 % smaller bodies.
- ``InfluxV2Writer``: the v2 write API (InfluxDB 2.x, 3.x, 1.8+) through influxdb-client's
  SYNCHRONOUS write API with gzip. Its background batching writer is not used: it keeps data
  only in memory, and the outbox is the only buffer here.

Each writer imports its library when it is made (decision 106): a gateway with only v1 sinks
never loads influxdb-client (18 MB of a small computer's memory), one with only v2 sinks never
loads ``influxdb`` and ``requests``.

A ``Drainer`` per sink takes batches from the outbox, writes them and moves the sink's cursor
only when the database answered that it stored them. A dead sink does not hold back another:
each drainer has its own cursor and runs its blocking writes in its own worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from openbranch.edge.core.config import InfluxV1Sink, InfluxV2Sink, SinkConfig
from openbranch.edge.telemetry.outbox import Entry, Outbox

if TYPE_CHECKING:
    import requests

__all__ = [
    "GZIP_LEVEL",
    "Alert",
    "Drainer",
    "DrainerStats",
    "InfluxV1Writer",
    "InfluxV2Writer",
    "Rejected",
    "Retryable",
    "SinkError",
    "StoreFailed",
    "TooLarge",
    "Unauthorized",
    "Writer",
    "classify",
    "make_writer",
    "sink_name",
]

log = logging.getLogger(__name__)

GZIP_LEVEL = 3  # line protocol shrinks ~8x at level 3; level 9 costs ~10x the CPU for ~20 % less


# -- exceptions --------------------------------------------------------------------------------


class SinkError(Exception):
    """A write that did not store its lines."""


class Rejected(SinkError):
    """400/422: the database refused the content (a bad line, a field type conflict)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


class TooLarge(SinkError):
    """413: the request was too large; a smaller one may pass."""

    def __init__(self, message: str) -> None:
        self.status = 413
        self.message = message
        super().__init__(f"413: {message}")


class Unauthorized(SinkError):
    """401/403: the credentials are wrong or lack write permission."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


class Retryable(SinkError):
    """The database could not take the write now (429, 5xx, timeout, connection refused).

    ``status`` is None when no HTTP answer came; ``retry_after`` is the server's Retry-After
    in seconds, if it sent one.
    """

    def __init__(self, status: int | None, message: str, retry_after: float | None = None) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after
        super().__init__(f"{status or 'no answer'}: {message}")


class StoreFailed(SinkError):
    """The local store could not give or ack this sink's batch (its file system turned
    read-only, an I/O error): the sink is not at fault, and everything stays pending."""


def classify(status: int, message: str, retry_after: float | None = None) -> SinkError:
    """The exception for an HTTP status that is not a success."""
    if status in (400, 422):
        return Rejected(status, message)
    if status == 413:
        return TooLarge(message)
    if status in (401, 403):
        return Unauthorized(status, message)
    return Retryable(status, message, retry_after)  # 429, 5xx, and 404 (no such database yet)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _server_message(body: object) -> str:
    """The server's own words: the "error" or "message" of a JSON body, else the text."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    with contextlib.suppress(ValueError, AttributeError):
        decoded = json.loads(text)
        for key in ("error", "message"):
            if isinstance(decoded.get(key), str):
                return str(decoded[key])
    return text.strip()


# -- writers -------------------------------------------------------------------------------


class Writer(Protocol):
    """Writes lines of line protocol to one database; raises a ``SinkError`` on failure."""

    name: str

    def write(self, lines: Sequence[str]) -> None: ...

    def close(self) -> None: ...


def sink_name(config: SinkConfig) -> str:
    """A stable name for the outbox cursor of a sink, e.g. influxdb_v1:http://host:8086/db."""
    if isinstance(config, InfluxV1Sink):
        return f"influxdb_v1:{config.url.rstrip('/')}/{config.database}"
    return f"influxdb_v2:{config.url.rstrip('/')}/{config.org}/{config.bucket}"


def make_writer(config: SinkConfig, *, timeout: float = 30.0) -> Writer:
    """The writer for a configured sink (secrets are resolved here)."""
    if isinstance(config, InfluxV1Sink):
        return InfluxV1Writer(config, timeout=timeout)
    return InfluxV2Writer(config, timeout=timeout)


class InfluxV1Writer:
    """POST /write?db=..&precision=n through the ``influxdb`` library, gzip'd."""

    def __init__(self, config: InfluxV1Sink, *, timeout: float = 30.0) -> None:
        import influxdb  # noqa: PLC0415 - loaded only for a v1 sink (decision 106)
        import requests  # noqa: PLC0415

        self.name = sink_name(config)
        url = urlparse(config.url)
        self._database = config.database
        self._last: requests.Response | None = None  # for Retry-After of a 5xx
        session = requests.Session()
        session.hooks["response"].append(self._remember)
        self._client = influxdb.InfluxDBClient(
            host=url.hostname or "localhost",
            port=url.port or (443 if url.scheme == "https" else 8086),
            username=config.username,
            password=config.password.resolve() if config.password else None,
            database=config.database,
            ssl=url.scheme == "https",
            verify_ssl=url.scheme == "https",
            path=url.path.strip("/"),
            timeout=timeout,
            retries=1,  # one attempt: the drainer owns retrying (0 would mean forever)
            gzip=False,  # compressed below at GZIP_LEVEL
            session=session,
        )

    def _remember(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self._last = response

    def write(self, lines: Sequence[str]) -> None:
        import influxdb.exceptions  # noqa: PLC0415 - loaded by __init__ already
        import requests  # noqa: PLC0415

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
            status = int(exc.code or 0)
            if 200 <= status < 300:  # a proxy or an InfluxDB-compatible server answering 200
                return
            raise self._error(status, exc.content) from exc
        except influxdb.exceptions.InfluxDBServerError as exc:
            status = self._last.status_code if self._last is not None else 500
            raise self._error(status, exc.args[0] if exc.args else "") from exc
        except requests.RequestException as exc:  # refused, reset, timed out, broken answer
            raise Retryable(None, f"{type(exc).__name__}: {exc}") from exc

    def _error(self, status: int, body: object) -> SinkError:
        header = self._last.headers.get("Retry-After") if self._last is not None else None
        return classify(status, _server_message(body), _retry_after(header))

    def close(self) -> None:
        self._client.close()


class InfluxV2Writer:
    """POST /api/v2/write?bucket=..&org=..&precision=ns through influxdb-client, gzip'd."""

    def __init__(self, config: InfluxV2Sink, *, timeout: float = 30.0) -> None:
        from influxdb_client.client.influxdb_client import (  # noqa: PLC0415 - v2 only (106)
            InfluxDBClient as V2Client,
        )
        from influxdb_client.client.write_api import SYNCHRONOUS  # noqa: PLC0415

        self.name = sink_name(config)
        self._bucket = config.bucket
        self._org = config.org
        self._client = V2Client(
            url=config.url,
            token=config.token.resolve() if config.token else "",
            org=config.org,
            enable_gzip=True,
            timeout=int(timeout * 1000),
            retries=False,  # the drainer owns retrying
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        import urllib3.exceptions  # noqa: PLC0415 - loaded by __init__ already
        from influxdb_client.domain.write_precision import WritePrecision  # noqa: PLC0415
        from influxdb_client.rest import ApiException  # noqa: PLC0415

        try:
            self._api.write(
                bucket=self._bucket,
                org=self._org,
                record=list(lines),
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            message = _server_message(exc.body) if exc.body else str(exc.reason)
            raise classify(int(exc.status or 0), message, _retry_after(exc.retry_after)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # refused, reset, timed out
            raise Retryable(None, f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


# -- the drainer ---------------------------------------------------------------------------


@dataclass(slots=True)
class DrainerStats:
    """Counters of one drainer (entries, not requests, unless said)."""

    written: int = 0  # entries the database stored
    dead_lettered: int = 0  # entries the database refused, now in the dead-letter table
    batches: int = 0  # batches handled (stored, or bisected and handled)
    retries: int = 0  # failed attempts that were retried later
    last_error: str = ""
    last_latency_ms: float = 0.0  # round trip of the latest handled batch


Alert = Callable[[str, str, bool], None]
"""Raise or clear an alert: (kind, message, active). Kinds: sink_down, sink_unauthorized,
sink_stalled (the local store failed this sink's read or ack)."""


class Drainer:
    """Drains one sink: take a batch, write it, ack it; bisect refused lines; back off.

    - success: the cursor moves past the batch;
    - ``Rejected``: the batch is bisected; the good halves are written, a single refused line
      goes to the dead-letter table with the server's message; the cursor moves as each part
      is handled, so a crash mid-bisection does not redo (or re-dead-letter) finished parts;
    - ``TooLarge``: the batch is split in halves (a single line too large is dead-lettered);
    - ``Unauthorized``: everything stays pending; alert ``sink_unauthorized``; retry every
      ``backoff_max`` seconds;
    - ``Retryable``: everything stays pending; alert ``sink_down``; retry after an exponential
      delay from ``backoff_min`` to ``backoff_max`` with equal jitter (half of it random), or
      after the server's Retry-After, stretched by up to a quarter at random (capped at
      ``backoff_max``), so a fleet told "in 5 s" does not come back in one step. The alert
      clears when a write succeeds again;
    - ``sqlite3.Error`` from the outbox (its batch not read or not acked): ``StoreFailed``,
      alert ``sink_stalled`` (not ``sink_down``: the database is not the one failing), retried
      like ``Retryable``. A line written but not acked is written again: the database keeps
      one point per series and timestamp.

    With fewer than ``batch_size`` entries pending, it waits ``flush_interval`` between
    batches, so a quiet branch sends a few requests a minute, not one per reading. With
    ``max_rate`` (lines a second), a backlog is sent at most that fast, in batches of at most
    a second's worth: a fleet catching up after a central outage adds up to a known load
    (bench/fleet.py). None: as fast as the database answers.
    """

    def __init__(
        self,
        *,
        outbox: Outbox,
        writer: Writer,
        batch_size: int = 5000,
        flush_interval: float = 1.0,
        backoff_min: float = 1.0,
        backoff_max: float = 60.0,
        max_rate: float | None = None,
        on_alert: Alert | None = None,
    ) -> None:
        if max_rate is not None and max_rate <= 0:
            raise ValueError(f"max_rate must be positive, not {max_rate}")
        self.outbox = outbox
        self.writer = writer
        self.name = writer.name
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.max_rate = max_rate
        self.stats = DrainerStats()
        self._on_alert = on_alert
        self._failures = 0
        self._alerting: str | None = None

    def lag_s(self, now_ns: int | None = None) -> float:
        """Age in seconds of the oldest reading this sink has not stored (0 when none)."""
        oldest = self.outbox.oldest_pending_ns(self.name)
        if oldest is None:
            return 0.0
        return max(0.0, ((time.time_ns() if now_ns is None else now_ns) - oldest) / 1e9)

    # -- one batch (blocking; runs in a worker thread) ------------------------------------

    def drain_once(self) -> int:
        """Handle one batch; return how many entries it handled (0: nothing pending).

        The common case sends the lines as they are; only a refused batch is loaded as
        entries and bisected. Raises ``Unauthorized`` or ``Retryable`` with the unhandled
        entries still pending.
        """
        last, lines = self.outbox.pending_lines(self.name, self.batch)
        if not lines:
            return 0
        started = time.perf_counter()
        try:
            self.writer.write(lines)
        except (Rejected, TooLarge) as exc:
            log.info("%s: batch of %d refused (%s); bisecting", self.name, len(lines), exc)
            batch = [e for e in self.outbox.pending(self.name, len(lines)) if e.seq <= last]
            self._refused(batch, exc)
        else:
            self.stats.written += len(lines)
        self.outbox.ack(self.name, last)
        self.stats.last_latency_ms = (time.perf_counter() - started) * 1000
        self.stats.batches += 1
        return len(lines)

    def _deliver(self, batch: Sequence[Entry]) -> None:
        """Write part of a refused batch; ack it once it is handled."""
        try:
            self.writer.write([e.line for e in batch])
        except (Rejected, TooLarge) as exc:
            self._refused(batch, exc)
            return
        self.stats.written += len(batch)
        self.outbox.ack(self.name, batch[-1].seq)

    def _refused(self, batch: Sequence[Entry], exc: Rejected | TooLarge) -> None:
        """Bisect a refused batch; a single refused line goes to the dead-letter table."""
        if len(batch) == 1:
            self._bury(batch[0], exc)
            self.outbox.ack(self.name, batch[0].seq)
        elif batch:
            half = len(batch) // 2
            self._deliver(batch[:half])
            self._deliver(batch[half:])

    def _bury(self, entry: Entry, exc: Rejected | TooLarge) -> None:
        self.outbox.dead_letter(self.name, [(entry, str(exc))])  # "400: <the server's words>"
        self.stats.dead_lettered += 1
        log.warning("%s: dead-lettered seq %d: %s", self.name, entry.seq, exc)

    # -- the loop ---------------------------------------------------------------------------

    @property
    def batch(self) -> int:
        """Entries per request: ``batch_size``, or a second's worth at ``max_rate``."""
        if self.max_rate is None:
            return self.batch_size
        return max(1, min(self.batch_size, int(self.max_rate)))

    def pace(self, handled: int, elapsed: float) -> float:
        """Seconds to wait after a batch of ``handled`` entries that took ``elapsed`` seconds,
        so the drain stays at or under ``max_rate`` (0 without a limit). The batch's second is
        stretched by up to a fifth at random: gateways released together (a central server
        back after an outage) drift apart instead of all writing at the top of each second."""
        if self.max_rate is None or handled == 0:
            return 0.0
        return max(0.0, handled / self.max_rate * random.uniform(1.0, 1.2) - elapsed)

    @property
    def failing(self) -> bool:
        """The last attempt failed (the drainer is backing off)."""
        return self._failures > 0

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until ``stop`` is set. A write in flight finishes (and is acked, or its lines
        stay pending); nothing is abandoned half-acked."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                handled = await asyncio.to_thread(self.drain_once)
            except SinkError as exc:
                await _wait(stop, self._failed(exc))
                continue
            except sqlite3.Error as exc:
                failed = StoreFailed(f"the local store: {type(exc).__name__}: {exc}")
                await _wait(stop, self._failed(failed))
                continue
            except Exception as exc:  # a bug must not stop the forwarding for good
                if not self._failures:  # the first of a row with its traceback; the rest are
                    # counted (a bug may fail every retry, for hours)
                    log.exception("%s: unexpected error while draining", self.name)
                await _wait(stop, self._failed(Retryable(None, f"{type(exc).__name__}: {exc}")))
                continue
            self._recovered()
            pause = self.pace(handled, time.monotonic() - started)
            if handled < self.batch:
                pause = max(pause, self.flush_interval)
            if pause > 0:
                await _wait(stop, pause)

    def _failed(self, exc: SinkError) -> float:
        """Count, log (once per outage), alert; return the delay before the next attempt."""
        self._failures += 1
        self.stats.retries += 1
        self.stats.last_error = str(exc)
        delay = self.retry_delay(exc)
        unauthorized = isinstance(exc, Unauthorized)
        if self._failures == 1 or unauthorized:
            log.warning("%s: %s; retrying in %.1f s", self.name, exc, delay)
        kind = "sink_down"
        if unauthorized:
            kind = "sink_unauthorized"
        elif isinstance(exc, StoreFailed):
            kind = "sink_stalled"
        self._alert(kind, f"{self.name}: {exc}")
        return delay

    def _recovered(self) -> None:
        if self._failures:
            log.warning("%s: writing again after %d failed attempts", self.name, self._failures)
            self._failures = 0
            self._alert(None, "")

    def retry_delay(self, exc: SinkError) -> float:
        """Seconds before the next attempt after ``exc``, counted as the latest of the
        failures in a row so far (the exponential step)."""
        if isinstance(exc, Unauthorized):
            return self.backoff_max
        if isinstance(exc, Retryable) and exc.retry_after is not None:
            return min(exc.retry_after * random.uniform(1.0, 1.25), self.backoff_max)
        exponential = min(self.backoff_min * 2.0 ** (self._failures - 1), self.backoff_max)
        return exponential * random.uniform(0.5, 1.0)  # jitter: branches do not retry in step

    def _alert(self, kind: str | None, message: str) -> None:
        """Raise ``kind`` (clearing a different one first), or clear with kind None."""
        if kind == self._alerting:
            return
        if self._on_alert is not None:
            if self._alerting is not None:
                self._on_alert(self._alerting, f"{self.name}: writing again", False)
            if kind is not None:
                self._on_alert(kind, message, True)
        self._alerting = kind


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
