"""One coordinator per device: polls on schedule, holds last values and availability.

It logs once when a device goes down and once when it recovers, backs off while it is down,
and marks values unavailable instead of inventing them. Readings go to ``emit`` (the outbox);
consumers read ``last`` and ``available``. Every device's readings pass the plausibility filter
first (``edge.core.plausible``): a people counter's value no door could have produced is taken
out, counted in ``stats.rejected`` ("implausible"), and neither stored nor seen by the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from openbranch.edge.core.clock import Clock
from openbranch.edge.core.device import DeviceSource, DeviceUnreachable, PollResult
from openbranch.edge.core.plausible import CounterFilter
from openbranch.edge.core.reading import Reading, Value

__all__ = ["Coordinator", "DeviceStats"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DeviceStats:
    polls: int = 0
    readings: int = 0
    failed_requests: int = 0
    unreachable_polls: int = 0
    missing_values: int = 0
    downs: int = 0
    last_failure: str = ""
    down_since: datetime | None = None
    last_ok: datetime | None = None
    missing: dict[str, str] = field(default_factory=dict)
    rejected: int = 0
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    held_back: int = 0  # due polls skipped while the store could not take readings


class Coordinator:
    def __init__(
        self,
        *,
        source: DeviceSource,
        clock: Clock,
        emit: Callable[[Sequence[Reading]], None],
        backoff_max: float = 300.0,
        on_availability: Callable[[str, bool], None] | None = None,
        hold: Callable[[], bool] = lambda: False,
    ) -> None:
        """``hold()`` true skips polls that are due (counted in ``stats.held_back``): the
        store cannot take more readings now."""
        self.source = source
        self._clock = clock
        self._emit = emit
        self._intervals = dict(source.intervals())
        self._backoff_max = backoff_max
        self._on_availability = on_availability
        self._hold = hold
        self.available: bool | None = None  # None until the first poll
        self.last: dict[tuple[str, str], tuple[Value, datetime]] = {}
        self.stats = DeviceStats()
        self._failures_in_row = 0
        self._counters = CounterFilter()

    @property
    def device_id(self) -> str:
        return self.source.device_id

    @property
    def polled(self) -> bool:
        """Polled on a schedule (Modbus), as opposed to pushing (MQTT)."""
        return bool(self._intervals)

    async def poll_once(self, groups: Sequence[str] | None = None) -> PollResult:
        """Poll the given groups (all by default), record the outcome, emit the readings."""
        groups = list(self._intervals) if groups is None else list(groups)
        self.stats.polls += 1
        try:
            result = await self.source.poll(groups)
        except DeviceUnreachable as exc:
            result = PollResult(reached=False, failures=(str(exc),))
        self._record(result)
        return result

    def _record(self, result: PollResult) -> None:
        if result.reached and result.failures and not result.readings:
            # It answers, but every request with an exception: nothing of it can be read,
            # and its last values would go stale unseen. Down, as if it did not answer.
            self.stats.failed_requests += len(result.failures)
            result = PollResult(reached=False, failures=result.failures, missing=result.missing)
        now = self._clock.now()
        self.stats.failed_requests += len(result.failures) if result.reached else 0
        self.stats.missing_values += len(result.missing)
        self.stats.missing = dict(result.missing)
        if result.failures:
            self.stats.last_failure = result.failures[-1]
        if not result.reached:
            self.stats.unreachable_polls += 1
            self._failures_in_row += 1
            if self.available is not False:
                self.stats.downs += 1
                self.stats.down_since = now
                log.warning("%s: unavailable (%s)", self.device_id, self.stats.last_failure)
                self._set_available(False)
            return
        if self.available is False:
            log.warning(
                "%s: recovered after %s", self.device_id, now - (self.stats.down_since or now)
            )
        self._failures_in_row = 0
        self.stats.down_since = None
        self.stats.last_ok = now
        self._set_available(True)
        readings = self._plausible(result.readings)
        for reading in readings:
            for key, value in reading.fields.items():
                self.last[(reading.measurement.name, key)] = (value, reading.time)
        self.stats.readings += len(readings)
        if readings:
            self._emit(readings)

    def _plausible(self, readings: Sequence[Reading]) -> Sequence[Reading]:
        """The readings without their implausible counter values, each refusal counted."""
        kept, refused = self._counters.filter(readings)
        for reason in refused:
            self._reject(self.device_id, reason)
        return kept

    def _set_available(self, available: bool) -> None:
        changed = self.available is not available
        self.available = available
        if changed and self._on_availability is not None:
            self._on_availability(self.device_id, available)

    def retry_delay(self) -> float:
        """While down: the shortest interval, doubled per failure, capped at ``backoff_max``."""
        base = min(self._intervals.values())
        return float(min(base * 2 ** (self._failures_in_row - 1), self._backoff_max))

    def _accept_pushed(self, readings: Sequence[Reading]) -> None:
        """A pushed message: the device is alive; remember its values and pass them on."""
        if self.available is not True:
            self._record(PollResult(readings=tuple(readings), reached=True))
            return
        readings = self._plausible(readings)
        for reading in readings:
            name = reading.measurement.name
            for key, value in reading.fields.items():
                self.last[(name, key)] = (value, reading.time)
        self.stats.readings += len(readings)
        if readings:
            self._emit(readings)

    def _reject(self, where: str, reason: str) -> None:
        self.stats.rejected += 1
        self.stats.rejected_reasons[reason.split(":", maxsplit=1)[0]] = (
            self.stats.rejected_reasons.get(reason.split(":", maxsplit=1)[0], 0) + 1
        )
        if self.stats.rejected <= 10 or self.stats.rejected % 1000 == 0:
            log.warning(
                "%s: rejected a message on %s: %s (%d rejected so far)",
                self.device_id,
                where,
                reason,
                self.stats.rejected,
            )

    async def run(self) -> None:
        """Poll every group when it is due (or, for push devices, listen) until cancelled."""
        if not self._intervals:
            await self.source.listen(self._accept_pushed, self._reject)
            return
        # due times on the monotonic clock: a step of the wall clock neither stalls nor
        # bunches the polls (decision 46)
        due = dict.fromkeys(self._intervals, 0.0)
        start = self._clock.monotonic()
        while True:
            now = self._clock.monotonic() - start
            ready = sorted(g for g, t in due.items() if t <= now)
            if ready and self._hold():
                self.stats.held_back += 1
                for group in ready:
                    due[group] = max(due[group] + self._intervals[group], now)
            elif ready:
                await self.poll_once(ready)
                after = self._clock.monotonic() - start
                if self.available is False:
                    retry = after + self.retry_delay()
                    due = dict.fromkeys(due, retry)  # a recovery re-reads every group
                else:
                    for group in ready:
                        due[group] = max(due[group] + self._intervals[group], after)
            wait = min(due.values()) - (self._clock.monotonic() - start)
            if wait > 0:
                await self._clock.sleep(wait)
            else:
                await asyncio.sleep(0)
