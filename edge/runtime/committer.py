"""The committer: the one path from the gateway to the outbox, off the event loop.

Device readings wait at most ``COMMIT_EVERY`` seconds (or until ``COMMIT_MAX`` are queued) and
are committed in one transaction with their meter totals, closed hours and the energy
accounts' state; the gateway's own entries (alerts, audit, branch mode, health) and state
values (availability, task states) go with the next commit. A commit runs on the committer's
own writer thread, one at a time and in order, so a slow or failing disk never stalls polls,
MQTT dispatch or the engine. A reading is *accepted* when its transaction has committed; only
then are its states published (``on_committed``) and its MQTT message acknowledged to the
broker (``checkpoint`` is taken when a batch is formed, ``on_durable`` gets it once the batch
is committed: the MQTT session then acknowledges every QoS 1 message handed over up to it).

A commit that fails (disk full, I/O error, a read-only file system) keeps its batch, in order,
and is retried with a doubling backoff (``RETRY_MIN`` .. ``RETRY_MAX`` seconds); the energy
accounts are reloaded from what was committed, so a retried batch is never counted twice. The
failure is an alert (``store_failed``, critical) the moment it happens, cleared by the first
commit that succeeds. While commits fail, the queue may grow to ``MAX_PENDING`` entries; from
then on ``on_pressure(True)`` asks the sources to hold back (polls are skipped, the MQTT
session stops reading, so unacknowledged messages wait at the broker) until the queue is
below half again (``on_pressure(False)``).

Report by exception (``edge.telemetry.changes``): after the energy accounting has seen every
device reading (its hours need them all), the ``ChangeFilter`` decides which are written; the
others are *suppressed* before acceptance, never committed and counted (``suppressed``, by
measurement), and only the written ones are published (``on_committed``). The filter learns a
batch's decisions only once the batch has committed, so a retried batch is decided again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from openbranch.edge.core.reading import Reading
from openbranch.edge.telemetry.changes import ChangeFilter, Split
from openbranch.edge.telemetry.energy import EnergyLedger
from openbranch.edge.telemetry.outbox import Outbox, rows_of

__all__ = [
    "COMMIT_EVERY",
    "COMMIT_MAX",
    "MAX_PENDING",
    "STORE_FAILED",
    "CommitStats",
    "Committer",
]

log = logging.getLogger(__name__)

COMMIT_EVERY = 0.05  # real seconds a reading may wait for its commit
COMMIT_MAX = 5000  # readings that trigger a commit at once
MAX_PENDING = 50_000  # entries queued while commits fail, before the sources are held back
RETRY_MIN = 0.5  # real seconds before the first retry of a failed commit
RETRY_MAX = 30.0
STORE_FAILED = "store_failed"  # alert kind


@dataclass(slots=True)
class CommitStats:
    commits: int = 0
    failures: int = 0  # failed commit attempts
    failing: int = 0  # consecutive failures, 0 while commits succeed
    last_error: str = ""
    pending: int = 0


@dataclass(slots=True)
class _Batch:
    readings: list[Reading] = field(default_factory=list)  # device readings (energy, counted)
    offsets: list[float | None] = field(default_factory=list)  # each reading's clock offset
    own: list[Reading] = field(default_factory=list)  # the gateway's own telemetry
    audit: list[Reading] = field(default_factory=list)  # never dropped by the bound
    state: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.readings) + len(self.own) + len(self.audit) + len(self.state)

    def take(self) -> _Batch:
        batch = _Batch(self.readings, self.offsets, self.own, self.audit, self.state)
        self.readings, self.offsets, self.own, self.audit, self.state = [], [], [], [], {}
        return batch

    def put_back(self, batch: _Batch) -> None:
        """A failed batch goes back in front of what arrived since, in order."""
        self.readings = batch.readings + self.readings
        self.offsets = batch.offsets + self.offsets
        self.own = batch.own + self.own
        self.audit = batch.audit + self.audit
        self.state = {**batch.state, **self.state}


class Committer:
    def __init__(
        self,
        *,
        outbox: Outbox,
        energy: Callable[[], EnergyLedger],
        on_committed: Callable[[Sequence[Reading]], None] = lambda _: None,
        on_failure: Callable[[str, bool], None] = lambda _message, _active: None,
        on_pressure: Callable[[bool], None] = lambda _on: None,
        max_pending: int = MAX_PENDING,
        retry_min: float = RETRY_MIN,
        clock_offset: Callable[[], float | None] = lambda: None,
        checkpoint: Callable[[], int] = lambda: 0,
        on_durable: Callable[[int], None] = lambda _mark: None,
        changes: ChangeFilter | None = None,
    ) -> None:
        """``energy`` makes the ledger (again after a failed commit: it reloads the accounts
        from the outbox). ``on_failure(message, active)`` raises and clears the alert.
        ``clock_offset()``: the wall clock minus the monotonic clock, taken as readings are
        accepted (moments after their poll stamped them) and handed to the ledger, which
        tells a step of the wall clock from a gap by it (decision 47). ``changes``: which device
        readings are written (default: a ``ChangeFilter`` with its default heartbeat and no
        deadbands)."""
        self._outbox = outbox
        self._make_energy = energy
        self._energy = energy()
        self._on_committed = on_committed
        self._on_failure = on_failure
        self._on_pressure = on_pressure
        self._max_pending = max_pending
        self._retry_min = retry_min
        self._clock_offset = clock_offset
        self._checkpoint = checkpoint  # e.g. the MQTT session's count of messages handed over
        self._on_durable = on_durable  # ...acknowledged to the broker once committed
        self.changes = changes if changes is not None else ChangeFilter()
        self._queue = _Batch()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-writer")
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        self._held_back = False
        self.accepted = 0  # device readings committed (the suppressed ones are not)
        self.stats = CommitStats()

    # -- what the parts hand over (on the loop; never blocks) ---------------------------

    def accept(self, readings: Sequence[Reading]) -> None:
        """Queue device readings for the next commit (at most ``COMMIT_EVERY`` away)."""
        self._queue.readings.extend(readings)
        self._queue.offsets.extend([self._clock_offset()] * len(readings))
        self._soon(now=len(self._queue.readings) >= COMMIT_MAX)

    def record(self, readings: Sequence[Reading], *, audit: bool = False) -> None:
        """Queue the gateway's own entries; ``audit`` ones are never dropped by the bound."""
        (self._queue.audit if audit else self._queue.own).extend(readings)
        self._soon(now=False)

    def put_state(self, key: str, value: str) -> None:
        """Queue one state value (availability, task states) for the next commit."""
        self._queue.state[key] = value
        self._soon(now=False)

    @property
    def holding_back(self) -> bool:
        """True while the sources are asked to hold back (commits failing, queue full)."""
        return self._held_back

    # -- committing -----------------------------------------------------------------------

    def _soon(self, *, now: bool) -> None:
        self.stats.pending = len(self._queue)
        self._check_pressure()
        if self._running is not None:
            return  # the running commit takes the rest when it is done
        if now:
            self._start()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(COMMIT_EVERY, self._start)

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running is None and len(self._queue):
            self._running = asyncio.get_running_loop().create_task(
                self._commit_all(), name="commit"
            )

    async def _commit_all(self) -> None:
        """Commit until the queue is empty; on failure keep the batch and retry."""
        delay = self._retry_min
        try:
            while len(self._queue):
                mark = self._checkpoint()  # everything handed over so far is in the batch
                batch = self._queue.take()
                try:
                    split = await asyncio.get_running_loop().run_in_executor(
                        self._writer, self._write, batch
                    )
                except Exception as exc:  # sqlite3.Error, OSError: the disk said no
                    self._queue.put_back(batch)
                    self._failed(exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                delay = self._retry_min
                self._succeeded(batch, split)
                self._on_durable(mark)
        finally:
            self._running = None
            self.stats.pending = len(self._queue)
            self._check_pressure()

    def _write(self, batch: _Batch) -> Split:
        """On the writer thread: energy accounting, the change filter, then one transaction
        for the whole batch (readings with the accounts' state, own telemetry, audit): a
        failure commits none of it, so the retry cannot commit a part twice."""
        out, state = (
            self._energy.process(batch.readings, clock_offsets=batch.offsets)
            if batch.readings
            else ([], {})
        )
        split = self.changes.split(out)
        rows = rows_of(split.written) + rows_of(batch.own) + rows_of(batch.audit, audit=True)
        if rows or state or batch.state:
            self._outbox.append_rows(rows, state={**state, **batch.state})
        return split

    def _failed(self, exc: Exception, delay: float) -> None:
        stats = self.stats
        stats.failures += 1
        stats.failing += 1
        stats.last_error = f"{type(exc).__name__}: {exc}"
        self._energy = self._make_energy()  # its accounts counted the batch: reload them
        if stats.failing == 1:
            log.error("outbox: commit failed (%s); retrying, nothing is dropped", exc)
        self._on_failure(
            f"the local store refuses commits ({stats.last_error}); "
            f"{len(self._queue)} entries kept in memory, retrying in {delay:g} s",
            True,
        )

    def _succeeded(self, batch: _Batch, split: Split) -> None:
        self.stats.commits += 1
        self.changes.apply(split)
        self.accepted += len(batch.readings) - sum(split.suppressed.values())
        if self.stats.failing:
            log.warning(
                "outbox: committing again after %d failed attempts",
                self.stats.failing,
            )
            self.stats.failing = 0
            self._on_failure("the local store takes commits again", False)
        if split.written:
            self._on_committed(split.written)

    def _check_pressure(self) -> None:
        size = len(self._queue)
        if not self._held_back and size >= self._max_pending:
            self._held_back = True
            log.error("outbox: %d entries wait for the store; holding the sources back", size)
            self._on_pressure(True)
        elif self._held_back and size < self._max_pending // 2:
            self._held_back = False
            log.warning("outbox: the queue is down to %d; the sources go on", size)
            self._on_pressure(False)

    async def flush(self) -> None:
        """Commit everything queued now and wait for it (tests, the stop)."""
        self._start()
        while self._running is not None:
            await asyncio.shield(self._running)
            self._start()

    async def close(self, *, within: float = 10.0) -> int:
        """Commit what is queued, trying for up to ``within`` seconds while the store fails;
        then stop the writer thread. Returns the entries that could not be committed (logged:
        they were never accepted, and QoS 1 messages among them stay unacknowledged)."""
        try:
            async with asyncio.timeout(within):
                await self.flush()
        except TimeoutError:
            pass
        if self._running is not None:
            self._running.cancel()
        left = len(self._queue)
        if left:
            log.error("outbox: %d entries could not be committed before the stop", left)
        self._writer.shutdown(wait=True)
        return left
