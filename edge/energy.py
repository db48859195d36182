"""Energy accounting at the edge, done once: reset-corrected totals and hourly consumption.

Rules (ARCHITECTURE.md):
- ``total = offset + reference``, where ``reference`` is the highest register value seen since
  the last reset. The first reading starts the account: total = register, no consumption.
- A reading below 90 % of the reference is a meter reset or replacement: the new reading
  counts in full (offset grows by the old reference).
- A reading below the reference but at or above 90 % of it is noise: flagged suspect, no
  consumption, the total does not fall, and only what later exceeds the old reference counts.
- With a ``rollover`` (the value at which the register wraps to 0), a drop from the top tenth
  of the range to the bottom tenth is a wrap: consumption = rollover - reference + register.
- The consumption between two readings is spread uniformly over the interval and split at UTC
  hour boundaries. An interval longer than ``max_gap`` is a gap: its consumption is spread all
  the same (conserved, never lost, never doubled) and the hours it touches are ``interpolated``.
  ``coverage`` is the share of an hour covered by normal intervals.
- An hour is closed, and emitted once as an ``energy_hourly`` reading stamped at its start,
  when a reading at or after its end has been processed.

Pure: time comes in with each reading; the state to persist comes out (``AccountState``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from edge import schema
from edge.reading import Quality, Reading, to_ns

__all__ = [
    "AccountState",
    "EnergyAccount",
    "EnergyLedger",
    "Observation",
    "local_day_totals",
]

log = logging.getLogger(__name__)

HOUR_NS = 3600 * 10**9
RESET_RATIO = 0.9


@dataclass(frozen=True, slots=True)
class _Bucket:
    consumption: float = 0.0
    covered_ns: int = 0
    gap: bool = False


@dataclass(frozen=True, slots=True)
class AccountState:
    """Everything an account needs to resume exactly where it stopped."""

    last_ns: int | None = None
    reference: float | None = None
    offset: float = 0.0
    buckets: dict[int, _Bucket] = field(default_factory=dict)  # hour start (ns) -> bucket

    def to_json(self) -> str:
        return json.dumps(
            {
                "last_ns": self.last_ns,
                "reference": self.reference,
                "offset": self.offset,
                "buckets": {
                    str(h): [b.consumption, b.covered_ns, b.gap] for h, b in self.buckets.items()
                },
            }
        )

    @classmethod
    def from_json(cls, text: str) -> AccountState:
        raw = json.loads(text)
        return cls(
            last_ns=raw["last_ns"],
            reference=raw["reference"],
            offset=raw["offset"],
            buckets={
                int(h): _Bucket(c, int(n), bool(g)) for h, (c, n, g) in raw["buckets"].items()
            },
        )


@dataclass(frozen=True, slots=True)
class Observation:
    register: float
    total: float
    consumption: float  # since the previous reading
    quality: Quality
    hourly: tuple[Reading, ...]


class EnergyAccount:
    """One meter's counter: feed it raw registers, get totals and closed hours."""

    def __init__(
        self,
        *,
        branch: str,
        device: str,
        carrier: str,
        rollover: float | None = None,
        max_gap: timedelta = timedelta(minutes=15),
        state: AccountState | None = None,
    ) -> None:
        self.branch = branch
        self.device = device
        self.carrier = carrier
        self.rollover = rollover
        self.max_gap_ns = int(max_gap.total_seconds() * 10**9)
        self._state = state or AccountState()

    def state(self) -> AccountState:
        return self._state

    def observe(self, time: datetime, register: float) -> Observation:
        if not math.isfinite(register) or register < 0:
            raise ValueError(f"{self.device}: register {register} is not a meter reading")
        now_ns = to_ns(time)
        s = self._state
        if s.last_ns is not None and now_ns <= s.last_ns:
            raise ValueError(
                f"{self.device}: reading at {time.isoformat()} is not after the previous one"
            )
        if s.reference is None or s.last_ns is None:
            self._state = replace(s, last_ns=now_ns, reference=register)
            return Observation(register, s.offset + register, 0.0, Quality.GOOD, ())
        delta, reference, offset, quality = self._step(s.reference, s.offset, register)
        buckets = _spread(
            dict(s.buckets), s.last_ns, now_ns, delta, now_ns - s.last_ns > self.max_gap_ns
        )
        closed = sorted(h for h in buckets if h + HOUR_NS <= now_ns)
        hourly = tuple(self._hourly(h, buckets.pop(h)) for h in closed)
        self._state = AccountState(
            last_ns=now_ns, reference=reference, offset=offset, buckets=buckets
        )
        return Observation(register, offset + reference, delta, quality, hourly)

    def _step(
        self, reference: float, offset: float, register: float
    ) -> tuple[float, float, float, Quality]:
        """(consumption, new reference, new offset, quality) for one new register value."""
        if register >= reference:
            return register - reference, register, offset, Quality.GOOD
        r = self.rollover
        if r is not None and reference >= 0.9 * r and register <= 0.1 * r:
            return r - reference + register, register, offset + r, Quality.GOOD
        if register < RESET_RATIO * reference:
            return register, register, offset + reference, Quality.GOOD
        return 0.0, reference, offset, Quality.SUSPECT

    def _hourly(self, hour_ns: int, bucket: _Bucket) -> Reading:
        quality = "interpolated" if bucket.gap else "measured"
        return Reading(
            branch=self.branch,
            device=self.device,
            measurement=schema.ENERGY_HOURLY,
            fields={
                schema.HOURLY_CONSUMPTION.key: float(bucket.consumption),
                schema.HOURLY_QUALITY.key: quality,
                schema.HOURLY_COVERAGE.key: min(1.0, bucket.covered_ns / HOUR_NS),
            },
            tags={schema.Tag.CARRIER.value: self.carrier},
            time=datetime.fromtimestamp(hour_ns // 10**9, UTC),
        )


def _spread(
    buckets: dict[int, _Bucket], start_ns: int, end_ns: int, delta: float, gap: bool
) -> dict[int, _Bucket]:
    """Add ``delta`` spread uniformly over [start, end) to the hour buckets it overlaps."""
    length = end_ns - start_ns
    hour = start_ns - start_ns % HOUR_NS
    while hour < end_ns:
        lo, hi = max(start_ns, hour), min(end_ns, hour + HOUR_NS)
        b = buckets.get(hour, _Bucket())
        buckets[hour] = _Bucket(
            consumption=b.consumption + delta * (hi - lo) / length,
            covered_ns=b.covered_ns + (0 if gap else hi - lo),
            gap=b.gap or gap,
        )
        hour += HOUR_NS
    return buckets


def local_day_totals(hourly: Iterable[tuple[datetime, float]], tz: ZoneInfo) -> dict[date, float]:
    """Sum hourly consumption (stamped at the UTC hour start) into local calendar days."""
    days: dict[date, float] = {}
    for start, consumption in hourly:
        day = start.astimezone(tz).date()
        days[day] = days.get(day, 0.0) + consumption
    return days


class EnergyLedger:
    """The accounts of one gateway: adds ``total`` to meter readings and emits closed hours.

    ``load`` and the returned state updates let the caller persist each account in the same
    transaction as the readings derived from it (the outbox's ``append(state=...)``).
    """

    def __init__(self, *, branch: str, load: Callable[[str], str | None]) -> None:
        self._branch = branch
        self._load = load
        self._accounts: dict[str, EnergyAccount] = {}
        self.rejected = 0

    @staticmethod
    def state_key(device: str) -> str:
        return f"energy:{device}"

    def _account(self, reading: Reading) -> EnergyAccount:
        account = self._accounts.get(reading.device)
        if account is None:
            saved = self._load(self.state_key(reading.device))
            account = EnergyAccount(
                branch=self._branch,
                device=reading.device,
                carrier=reading.tags.get(schema.Tag.CARRIER.value, ""),
                state=AccountState.from_json(saved) if saved else None,
            )
            self._accounts[reading.device] = account
        return account

    def process(self, readings: Sequence[Reading]) -> tuple[list[Reading], dict[str, str]]:
        """Readings with totals added, plus closed hours; and the account states to save."""
        out: list[Reading] = []
        state: dict[str, str] = {}
        key = schema.ENERGY_REGISTER.key
        for reading in readings:
            register = reading.fields.get(key)
            if reading.measurement is not schema.ENERGY or not isinstance(register, float):
                out.append(reading)
                continue
            account = self._account(reading)
            try:
                seen = account.observe(reading.time, register)
            except ValueError as exc:
                self.rejected += 1
                log.warning("energy: %s; kept the reading without a total", exc)
                out.append(reading)
                continue
            fields = {**reading.fields, schema.ENERGY_TOTAL.key: float(seen.total)}
            out.append(replace(reading, fields=fields, quality=seen.quality))
            out.extend(seen.hourly)
            state[self.state_key(reading.device)] = account.state().to_json()
        return out, state
