"""Energy accounting at the edge, done once: reset-corrected totals and hourly consumption.

An ``EnergyAccount`` follows one meter's counter (branch, device, carrier). It is pure: each
reading comes in with its gateway timestamp, and the state to persist comes out
(``AccountState``); nothing here reads a clock, a file or the network.

The counter (each new register value is compared with the *reference*: the highest register
accepted since the last reset or wrap):

- ``total = offset + reference``. The first reading ever is the baseline: total = register
  (offset 0), no consumption.
- At or above the reference: an increase; consumption = register - reference.
- With a ``rollover`` configured (the value at which the register wraps to 0), a drop from the
  top tenth of the range (reference >= 0.9 * rollover) to the bottom tenth (register <
  0.1 * rollover) is a wrap: consumption = rollover - reference + register, offset += rollover.
- Otherwise, below 90 % of the reference: a meter reset or replacement. The new register
  counts in full (consumption = register) and offset += reference.
- Below the reference but at or above 90 % of it: a dip, i.e. noise. The observation is
  flagged ``Quality.SUSPECT``, consumption is 0, the total does not fall and the reference stays
  at the old maximum, so only what later exceeds it counts (nothing is counted twice).

The hours (all UTC):

- The consumption between two consecutive readings at t1 < t2 is spread uniformly over
  [t1, t2) and split at hour boundaries in proportion to time; the shares add up to the
  consumption (never lost, never doubled).
- An interval longer than ``max_gap`` is a gap. Its consumption is spread all the same, but
  every hour it touches is ``interpolated``; an hour is ``measured`` only if every interval in
  it is a normal one. ``coverage`` is the share of the hour covered by normal intervals (an
  hour with readings at its boundaries only is fully covered; the part of the first hour before
  the account's first reading is not covered).
- An hour is closed, and emitted once as an ``energy_hourly`` reading stamped at its start,
  when a reading at or after its end has been processed. Hours come out in order, including
  hours entirely inside a gap (interpolated, coverage 0.0).

Clock steps (decision 47). Readings are stamped by the wall clock, which NTP or a person may
step. The gateway passes each reading's clock offset (wall clock minus monotonic clock,
``edge.core.clock.clock_offset``, taken when the reading was accepted). Between two readings
of one account that both have one, the monotonic time elapsed is known; when the wall-clock
interval differs from it by more than ``CLOCK_STEP`` (a minute), or the reading is not after
the previous one, the clock stepped in between. The counter arithmetic is the same as ever
(consumption is never lost and never counted twice); only its place in time changes:

- The interval really lasted its monotonic time ``e`` and really ended at the reading's (new)
  wall time ``t``, so it is placed at [t - e, t) — but never before the *floor*, the end of
  the last hour already emitted: an hour is emitted once, and never before a reading at or
  after its end. The interval counts like a gap: its hours are ``interpolated`` and it adds
  no coverage.
- A step forward: the hour that was open is emitted when the interval starts after it (its
  coverage shows what the clock skipped); the hours the clock skipped get no row (the meter
  never lived through them) and stay free in case the clock comes back.
- A step back: the open hour's consumption moves back with the clock, to the hour the interval
  now starts in (never before the floor). A reading whose time is at or before the floor (the
  clock went back over an hour already emitted) is *held*: its consumption goes into the
  floor's hour, the account's time stays at the floor, and the hour closes once a reading at
  or after its end arrives — so no row is ever written for an hour the wall clock has not
  reached, and none twice. Coverage is capped at the whole hour (the clock lived some minutes
  of it twice).

A step is recognised only between two readings the same account saw with an offset: not
across a restart (the monotonic clock means nothing there) nor after the ledger was reloaded.
Without offsets a reading not after the previous one is rejected, as before, and a step
forward is a gap.

Rejected, with a ValueError naming the device (the caller logs and counts it; the account is
unchanged): a reading not after the previous one (with no clock step seen), a naive timestamp,
a register that is not a finite number >= 0, and a register at or above the configured
rollover.

``EnergyLedger`` applies the accounts to a gateway's stream of readings: it adds ``total`` to
``energy`` readings, appends the closed hours, and returns each account's state to commit with
them. Its rollovers come from the devices themselves: ``energy_rollovers`` reads each source's
register widths (``edge.device.Rollovers``; a Modbus point's type and scale), so a wrap of a
uint16 or uint32 counter is consumption, not a reset. ``local_day_totals`` sums hourly
consumption into local calendar days for reports.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TypeVar
from zoneinfo import ZoneInfo

from openbranch.edge.core import schema
from openbranch.edge.core.device import DeviceSource, rollovers_of
from openbranch.edge.core.reading import Quality, Reading, to_ns

__all__ = [
    "CLOCK_STEP",
    "DEFAULT_MAX_GAP",
    "RESET_RATIO",
    "WRAP_BAND",
    "AccountState",
    "CounterEvent",
    "EnergyAccount",
    "EnergyLedger",
    "HourBucket",
    "HourQuality",
    "Observation",
    "classify",
    "energy_rollovers",
    "local_day_totals",
    "split_by_hour",
]

log = logging.getLogger(__name__)

HOUR_NS = 3_600 * 10**9
RESET_RATIO = 0.9  # below 90 % of the reference: a reset; from 90 % up to it: a dip
WRAP_BAND = 0.1  # a wrap goes from the top tenth of the rollover range to the bottom tenth
DEFAULT_MAX_GAP = timedelta(minutes=15)
CLOCK_STEP = timedelta(minutes=1)  # wall minus monotonic time between readings: a clock step
_CLOCK_STEP_NS = CLOCK_STEP // timedelta(microseconds=1) * 1_000
STATE_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_T = TypeVar("_T")


class CounterEvent(StrEnum):
    """What a new register value meant for the counter."""

    FIRST = "first"  # the account's first reading: the baseline, no consumption
    INCREASE = "increase"  # at or above the reference (equal is an increase of 0)
    DIP = "dip"  # below the reference, at or above 90 % of it: noise, flagged
    RESET = "reset"  # below 90 % of the reference: reset or replaced, counts in full
    WRAP = "wrap"  # from the top tenth of the rollover range to the bottom tenth


class HourQuality(StrEnum):
    """How an hour's consumption was obtained: the choices of ``schema.HOURLY_QUALITY``."""

    MEASURED = "measured"  # every interval in the hour was a normal one
    INTERPOLATED = "interpolated"  # part of the hour came from a gap, spread uniformly
    ESTIMATED = "estimated"  # not produced here: the account never invents consumption


def classify(reference: float, register: float, *, rollover: float | None = None) -> CounterEvent:
    """What ``register`` means after ``reference`` (see the module docstring for the rules)."""
    if register >= reference:
        return CounterEvent.INCREASE
    if (
        rollover is not None
        and reference >= (1 - WRAP_BAND) * rollover
        and register < WRAP_BAND * rollover
    ):
        return CounterEvent.WRAP
    if register < RESET_RATIO * reference:
        return CounterEvent.RESET
    return CounterEvent.DIP


def split_by_hour(start_ns: int, end_ns: int, amount: float) -> Iterator[tuple[int, int, float]]:
    """``(hour start, overlap, share)`` for each UTC hour that [start, end) overlaps, in order.

    Times are nanoseconds since the epoch. Shares are ``amount`` in proportion to the overlap;
    each is the difference of two cumulative shares and the last cumulative share is
    ``amount`` itself, so no share is negative and they add up to ``amount`` (up to float
    rounding of the sum, about 1e-16 relative).
    """
    if end_ns <= start_ns:
        raise ValueError(f"empty interval [{start_ns}, {end_ns})")
    length = end_ns - start_ns
    hour = start_ns - start_ns % HOUR_NS
    before = 0.0
    while hour < end_ns:
        lo, hi = max(start_ns, hour), min(end_ns, hour + HOUR_NS)
        upto = amount if hi == end_ns else amount * ((hi - start_ns) / length)
        yield hour, hi - lo, upto - before
        before = upto
        hour += HOUR_NS


@dataclass(frozen=True, slots=True)
class HourBucket:
    """What has been accounted so far to one UTC hour (``start_ns``: its start, ns)."""

    start_ns: int
    consumption: float = 0.0
    covered_ns: int = 0  # time of the hour covered by normal (non-gap) intervals
    gap: bool = False  # some of the hour's consumption was spread from a gap

    def __post_init__(self) -> None:
        if self.start_ns % HOUR_NS:
            raise ValueError(f"hour bucket start {self.start_ns} is not on a UTC hour")
        if not 0 <= self.covered_ns <= HOUR_NS:
            raise ValueError(f"hour bucket coverage {self.covered_ns} ns is outside the hour")
        if not math.isfinite(self.consumption) or self.consumption < 0:
            raise ValueError(f"hour bucket consumption {self.consumption} is not >= 0")

    @property
    def start(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.start_ns // 1_000)

    @property
    def end_ns(self) -> int:
        return self.start_ns + HOUR_NS

    @property
    def coverage(self) -> float:
        return self.covered_ns / HOUR_NS

    @property
    def quality(self) -> HourQuality:
        return HourQuality.INTERPOLATED if self.gap else HourQuality.MEASURED

    def add(self, share: float, overlap_ns: int, *, gap: bool) -> HourBucket:
        """This bucket plus one interval's ``share`` over ``overlap_ns`` of the hour (coverage
        capped at the whole hour: after a clock step back some minutes come twice)."""
        return HourBucket(
            start_ns=self.start_ns,
            consumption=self.consumption + share,
            covered_ns=min(HOUR_NS, self.covered_ns + (0 if gap else overlap_ns)),
            gap=self.gap or gap,
        )


@dataclass(frozen=True, slots=True)
class AccountState:
    """Everything an account needs to resume exactly where it stopped.

    All unset before the first reading. Times are nanoseconds since the epoch (UTC).
    ``open_hour`` is the hour the last reading fell inside (its part up to that reading); there
    is none when the last reading was exactly on an hour boundary, unless a reading held there
    after a clock step back put some consumption in it. ``floor_ns``: the end of the last hour
    emitted, kept only while it is before the hour of the last reading (the hours a clock step
    forward skipped); otherwise that hour's start is the floor.
    """

    last_ns: int | None = None  # the account's time: that of the last accepted reading
    last_register: float | None = None  # its register, as read (below reference after a dip)
    reference: float | None = None  # highest register since the last reset or wrap
    offset: float = 0.0  # total = offset + reference
    open_hour: HourBucket | None = None
    floor_ns: int | None = None

    def __post_init__(self) -> None:
        unset = (self.last_ns is None, self.last_register is None, self.reference is None)
        if len(set(unset)) != 1:
            raise ValueError("account state: last_ns, last_register and reference go together")
        for name, value in (
            ("offset", self.offset),
            ("last_register", self.last_register),
            ("reference", self.reference),
        ):
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"account state: {name} {value} is not a finite number >= 0")
        self._check_open_hour()

    def _check_open_hour(self) -> None:
        hour = self.open_hour
        if hour is not None and (
            self.last_ns is None or not hour.start_ns <= self.last_ns < hour.end_ns
        ):
            raise ValueError("account state: the open hour does not hold the last reading")
        floor = self.floor_ns
        if floor is not None and (
            self.last_ns is None
            or floor % HOUR_NS
            or floor > self.last_ns - self.last_ns % HOUR_NS
            or (hour is not None and floor > hour.start_ns)
        ):
            raise ValueError(f"account state: floor {floor} is not an hour before the last reading")

    @property
    def floor(self) -> int | None:
        """The end of the last hour emitted (or later): no hour before it is emitted again."""
        if self.last_ns is None:
            return None
        return self.floor_ns if self.floor_ns is not None else self.last_ns - self.last_ns % HOUR_NS

    @property
    def total(self) -> float | None:
        """The reset-corrected total at the last reading (None before the first)."""
        return None if self.reference is None else self.offset + self.reference

    def to_json(self) -> str:
        hour = self.open_hour
        raw: dict[str, object] = {
            "v": STATE_VERSION,
            "last_ns": self.last_ns,
            "last_register": self.last_register,
            "reference": self.reference,
            "offset": self.offset,
            "open_hour": None
            if hour is None
            else [hour.start_ns, hour.consumption, hour.covered_ns, hour.gap],
        }
        if self.floor_ns is not None:  # only after a clock step forward skipped hours
            raw["floor_ns"] = self.floor_ns
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str) -> AccountState:
        """The state ``to_json`` wrote (or the unversioned format of the first release).

        Raises ValueError when the text is not a valid state.
        """
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            return _state_v1(raw) if "v" in raw else _state_v0(raw)
        except KeyError as exc:
            raise ValueError(
                f"not an energy account state (missing {exc}): {text[:200]!r}"
            ) from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not an energy account state ({exc}): {text[:200]!r}") from None


def _state_v1(raw: dict[str, object]) -> AccountState:
    if raw["v"] != STATE_VERSION:
        raise ValueError(f"state version {raw['v']!r}, this gateway reads {STATE_VERSION}")
    hour = raw["open_hour"]
    if hour is not None and not isinstance(hour, list):
        raise TypeError("open_hour is not a list")
    return AccountState(
        last_ns=_opt(_int, raw["last_ns"]),
        last_register=_opt(_float, raw["last_register"]),
        reference=_opt(_float, raw["reference"]),
        offset=_float(raw["offset"]),
        open_hour=None if hour is None else _bucket(hour),
        floor_ns=_opt(_int, raw.get("floor_ns")),
    )


def _state_v0(raw: dict[str, object]) -> AccountState:
    """The first release kept ``buckets`` (hour start -> [consumption, covered, gap]) and no
    last register (the reference stands in for it: it only differed after a dip)."""
    buckets = raw["buckets"]
    if not isinstance(buckets, dict) or len(buckets) > 1:
        raise ValueError("buckets is not a map of at most one open hour")
    reference = _opt(_float, raw["reference"])
    return AccountState(
        last_ns=_opt(_int, raw["last_ns"]),
        last_register=reference,
        reference=reference,
        offset=_float(raw["offset"]),
        open_hour=next((_bucket([int(h), *b]) for h, b in buckets.items()), None),
    )


def _bucket(raw: list[object]) -> HourBucket:
    start_ns, consumption, covered_ns, gap = raw
    if not isinstance(gap, bool):
        raise TypeError(f"gap {gap!r} is not a boolean")
    return HourBucket(_int(start_ns), _float(consumption), _int(covered_ns), gap)


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not an integer")
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _opt(parse: Callable[[object], _T], value: object) -> _T | None:
    return None if value is None else parse(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What one reading meant."""

    register: float  # as read
    total: float  # reset-corrected, monotonic
    consumption: float  # since the previous reading (0 for the first reading and a dip)
    quality: Quality  # SUSPECT for a dip, GOOD otherwise
    event: CounterEvent
    hourly: tuple[Reading, ...]  # energy_hourly readings of the hours this reading closed
    clock_step: timedelta | None = None  # the wall clock's step (> CLOCK_STEP) since the last


@dataclass(frozen=True, slots=True)
class _Step:
    event: CounterEvent
    consumption: float
    reference: float
    offset: float


def _step(reference: float, offset: float, register: float, rollover: float | None) -> _Step:
    """The counter after ``register``: consumption since the previous reading, new reference
    and offset."""
    event = classify(reference, register, rollover=rollover)
    if event is CounterEvent.INCREASE:
        return _Step(event, register - reference, register, offset)
    if event is CounterEvent.WRAP:
        assert rollover is not None  # classify only wraps with a rollover
        return _Step(event, rollover - reference + register, register, offset + rollover)
    if event is CounterEvent.RESET:
        return _Step(event, register, register, offset + reference)
    return _Step(event, 0.0, reference, offset)


class EnergyAccount:
    """One meter's counter: feed it raw registers in time order, get totals and closed hours.

    ``rollover``: the value at which the register wraps to 0 (``10**8`` for an 8-digit kWh
    display, ``2**32 * scale`` for a scaled uint32 register); None (the default) treats every
    large drop as a reset. ``max_gap``: the longest interval between readings that still counts
    as measured. ``state``: where to resume (from ``state()`` of an earlier account).
    """

    def __init__(
        self,
        *,
        branch: str,
        device: str,
        carrier: str,
        rollover: float | None = None,
        max_gap: timedelta = DEFAULT_MAX_GAP,
        state: AccountState | None = None,
    ) -> None:
        if rollover is not None and not (math.isfinite(rollover) and rollover > 0):
            raise ValueError(f"{device}: rollover {rollover} must be a finite number above 0")
        if max_gap <= timedelta(0):
            raise ValueError(f"{device}: max_gap {max_gap} must be above 0")
        self.branch = branch
        self.device = device
        self.carrier = carrier
        self.rollover = rollover
        self.max_gap = max_gap
        self._max_gap_ns = max_gap // timedelta(microseconds=1) * 1_000
        self._state = state or AccountState()
        self._monotonic: float | None = None  # the previous reading's monotonic time (s)
        self._clock_offset: float | None = None  # and its clock offset (s)
        reference = self._state.reference
        if rollover is not None and reference is not None and reference >= rollover:
            raise ValueError(f"{device}: saved reference {reference} is not below the rollover")

    def state(self) -> AccountState:
        """Everything needed to resume: persist it with the readings it produced."""
        return self._state

    def observe(
        self, time: datetime, register: float, *, clock_offset: float | None = None
    ) -> Observation:
        """Account one reading (``time``: when the gateway read it, timezone-aware;
        ``clock_offset``: the wall clock minus the monotonic clock then, in seconds, which
        tells a clock step from a gap).

        Raises ValueError naming the device, and leaves the account unchanged, for a reading
        not after the previous one (unless the clock stepped back) or a register that cannot
        be a reading of this meter.
        """
        now_ns = self._check_zone(time)
        register = self._check_register(register)
        s = self._state
        monotonic = None if clock_offset is None else time.timestamp() - clock_offset
        elapsed_ns = self._elapsed_ns(monotonic)
        # the account's time and the wall clock disagree (a step now, or one being held)
        across = (
            s.last_ns is not None
            and elapsed_ns is not None
            and (now_ns <= s.last_ns or abs(now_ns - s.last_ns - elapsed_ns) > _CLOCK_STEP_NS)
        )
        if not across:
            self._check_order(time, now_ns)
        step = None  # the wall clock's own step since the previous reading
        if clock_offset is not None and self._clock_offset is not None:
            moved = timedelta(seconds=clock_offset - self._clock_offset)
            step = moved if abs(moved) > CLOCK_STEP else None
        if s.last_ns is None or s.reference is None:
            self._state = replace(s, last_ns=now_ns, last_register=register, reference=register)
            self._monotonic, self._clock_offset = monotonic, clock_offset
            return Observation(
                register=register,
                total=s.offset + register,
                consumption=0.0,
                quality=Quality.GOOD,
                event=CounterEvent.FIRST,
                hourly=(),
            )
        counted = _step(s.reference, s.offset, register, self.rollover)
        if not across or elapsed_ns is None:
            last_ns = now_ns
            open_hour, closed = self._spread(s.open_hour, s.last_ns, now_ns, counted.consumption)
        else:
            last_ns, open_hour, closed = self._across_step(
                s, now_ns, elapsed_ns, counted.consumption
            )
        floor = closed[-1].end_ns if closed else s.floor
        self._state = AccountState(
            last_ns=last_ns,
            last_register=register,
            reference=counted.reference,
            offset=counted.offset,
            open_hour=open_hour,
            floor_ns=None if floor is None or floor == last_ns - last_ns % HOUR_NS else floor,
        )
        self._monotonic, self._clock_offset = monotonic, clock_offset
        return Observation(
            register=register,
            total=counted.offset + counted.reference,
            consumption=counted.consumption,
            quality=Quality.SUSPECT if counted.event is CounterEvent.DIP else Quality.GOOD,
            event=counted.event,
            hourly=tuple(self._hourly(bucket) for bucket in closed),
            clock_step=step,
        )

    def _elapsed_ns(self, monotonic: float | None) -> int | None:
        """Monotonic nanoseconds since the previous reading, when both readings had one."""
        if monotonic is None or self._monotonic is None:
            return None
        return max(0, round((monotonic - self._monotonic) * 1e9))

    def _check_zone(self, time: datetime) -> int:
        if time.tzinfo is None or time.utcoffset() is None:
            raise ValueError(f"{self.device}: reading time {time.isoformat()} has no time zone")
        return to_ns(time)

    def _check_order(self, time: datetime, now_ns: int) -> None:
        last_ns = self._state.last_ns
        if last_ns is not None and now_ns <= last_ns:
            previous = (_EPOCH + timedelta(microseconds=last_ns // 1_000)).isoformat()
            raise ValueError(
                f"{self.device}: reading at {time.astimezone(UTC).isoformat()} is not after "
                f"the previous one at {previous}"
            )

    def _across_step(
        self, s: AccountState, now_ns: int, elapsed_ns: int, consumption: float
    ) -> tuple[int, HourBucket | None, list[HourBucket]]:
        """An interval across a clock step (see the module docstring): placed at
        [now - elapsed, now) but not before the floor; (the account's new time, the new open
        hour, closed hours)."""
        assert s.last_ns is not None
        floor = s.floor
        assert floor is not None
        start_ns = max(now_ns - elapsed_ns, floor)
        end_ns = max(now_ns, floor)
        closed: list[HourBucket] = []
        bucket = s.open_hour
        if bucket is not None and bucket.end_ns <= start_ns:  # forward: that hour is over
            closed.append(bucket)
            bucket = None
        hour_ns = start_ns - start_ns % HOUR_NS
        if bucket is not None and bucket.start_ns != hour_ns:  # back: it moves with the clock
            bucket = replace(bucket, start_ns=hour_ns, gap=True)
        if start_ns < end_ns:
            bucket, more = self._spread(bucket, start_ns, end_ns, consumption, gap=True)
            return end_ns, bucket, closed + more
        bucket = (bucket or HourBucket(hour_ns)).add(consumption, 0, gap=True)  # held
        return end_ns, bucket, closed

    def _check_register(self, register: float) -> float:
        if isinstance(register, bool) or not isinstance(register, int | float):
            raise ValueError(f"{self.device}: register {register!r} is not a number")
        if not math.isfinite(register) or register < 0:
            raise ValueError(f"{self.device}: register {register} is not a finite number >= 0")
        if self.rollover is not None and register >= self.rollover:
            raise ValueError(
                f"{self.device}: register {register} is not below the rollover {self.rollover}"
            )
        return float(register)

    def _spread(
        self,
        open_hour: HourBucket | None,
        start_ns: int,
        end_ns: int,
        consumption: float,
        *,
        gap: bool = False,
    ) -> tuple[HourBucket | None, list[HourBucket]]:
        """Spread one interval's consumption over its hours: (the new open hour, closed hours).
        An interval longer than ``max_gap``, or one marked ``gap``, is a gap."""
        gap = gap or end_ns - start_ns > self._max_gap_ns
        closed: list[HourBucket] = []
        current = open_hour
        for hour_ns, overlap_ns, share in split_by_hour(start_ns, end_ns, consumption):
            bucket = current if current is not None else HourBucket(hour_ns)
            bucket = bucket.add(share, overlap_ns, gap=gap)
            if bucket.end_ns <= end_ns:
                closed.append(bucket)
                current = None
            else:
                current = bucket
        return current, closed

    def _hourly(self, bucket: HourBucket) -> Reading:
        return Reading(
            branch=self.branch,
            device=self.device,
            measurement=schema.ENERGY_HOURLY,
            fields={
                schema.HOURLY_CONSUMPTION.key: bucket.consumption,
                schema.HOURLY_QUALITY.key: bucket.quality.value,
                schema.HOURLY_COVERAGE.key: bucket.coverage,
            },
            tags={schema.Tag.CARRIER.value: self.carrier},
            time=bucket.start,
        )


def local_day_totals(hourly: Iterable[tuple[datetime, float]], tz: ZoneInfo) -> dict[date, float]:
    """Sum consumption stamped at UTC hour starts into the local calendar days of ``tz``.

    Each hour goes, whole, to the local day its start falls in, so with whole-hour offsets a
    local day has 24 hours, 23 on the day clocks spring forward and 25 when they fall back.
    Days come out in calendar order.
    """
    days: dict[date, float] = {}
    for start, consumption in hourly:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"hour start {start.isoformat()} has no time zone")
        day = start.astimezone(tz).date()
        days[day] = days.get(day, 0.0) + consumption
    return dict(sorted(days.items()))


def energy_rollovers(sources: Iterable[DeviceSource]) -> dict[str, float]:
    """Per device, the rollover of its ``energy.register`` as its source knows it (the
    ``rollovers`` of an ``EnergyLedger``); devices whose register width is unknown (floats,
    sources without ``rollovers()``) are left out and keep "a large drop is a reset"."""
    series = (schema.ENERGY.name, schema.ENERGY_REGISTER.key)
    found = {}
    for source in sources:
        rollover = rollovers_of(source).get(series)
        if rollover is not None:
            found[source.device_id] = rollover
    return found


class EnergyLedger:
    """The accounts of one gateway: adds ``total`` to meter readings and emits closed hours.

    One account per (device, carrier). ``load`` returns a saved state by key (None when there
    is none); the state updates that ``process`` returns are to be committed in the same
    transaction as the readings derived from them (the outbox's ``append(state=...)``).
    ``rollovers`` maps a device to its register's rollover (devices not in it have none; see
    ``energy_rollovers``). A saved account whose reference is not below the device's rollover
    (the meter's profile changed) goes on without one, logged, until the gateway restarts
    (by then the first new reading has reset it below the rollover).
    ``max_gaps`` maps a device to its own ``max_gap`` (others get ``max_gap``): a meter polled
    every 15 minutes has 15-minute intervals that are not gaps.
    """

    def __init__(
        self,
        *,
        branch: str,
        load: Callable[[str], str | None],
        rollovers: Mapping[str, float] | None = None,
        max_gap: timedelta = DEFAULT_MAX_GAP,
        max_gaps: Mapping[str, timedelta] | None = None,
    ) -> None:
        self._branch = branch
        self._load = load
        self._rollovers = dict(rollovers or {})
        self._max_gap = max_gap
        self._max_gaps = dict(max_gaps or {})
        self._accounts: dict[tuple[str, str], EnergyAccount] = {}
        self.rejected = 0  # readings an account refused (kept, without a total)
        self.unreadable_states = 0  # saved states that could not be read (started afresh)

    @staticmethod
    def state_key(device: str, carrier: str) -> str:
        return f"energy:{device}:{carrier}"

    def _saved(self, device: str, carrier: str) -> AccountState | None:
        # the first release saved one account per device, under "energy:<device>"
        text = self._load(self.state_key(device, carrier)) or self._load(f"energy:{device}")
        if not text:
            return None
        try:
            return AccountState.from_json(text)
        except ValueError as exc:
            self.unreadable_states += 1
            log.error("energy: %s: saved account unreadable, starting afresh: %s", device, exc)
            return None

    def _account(self, device: str, carrier: str) -> EnergyAccount:
        account = self._accounts.get((device, carrier))
        if account is None:
            saved = self._saved(device, carrier)
            rollover = self._rollovers.get(device)
            if rollover is not None and saved is not None and (saved.reference or 0) >= rollover:
                log.error(
                    "energy: %s: saved reference %s is not below the register's rollover %s"
                    " (a new meter profile?); accounting without a rollover",
                    device,
                    saved.reference,
                    rollover,
                )
                rollover = None
            account = EnergyAccount(
                branch=self._branch,
                device=device,
                carrier=carrier,
                rollover=rollover,
                max_gap=self._max_gaps.get(device, self._max_gap),
                state=saved,
            )
            self._accounts[(device, carrier)] = account
        return account

    def process(
        self,
        readings: Sequence[Reading],
        *,
        clock_offsets: Sequence[float | None] | None = None,
    ) -> tuple[list[Reading], dict[str, str]]:
        """Readings with totals added, plus closed hours; and the account states to save.

        ``clock_offsets``: for each reading, the wall clock minus the monotonic clock when it
        was accepted (``edge.core.clock.clock_offset``), so that a step of the wall clock is
        not taken for a gap (see the module docstring); None where unknown.
        """
        offsets = [None] * len(readings) if clock_offsets is None else list(clock_offsets)
        if len(offsets) != len(readings):
            raise ValueError(f"{len(offsets)} clock offsets for {len(readings)} readings")
        out: list[Reading] = []
        state: dict[str, str] = {}
        for reading, clock_offset in zip(readings, offsets, strict=True):
            out.append(reading)
            register = reading.fields.get(schema.ENERGY_REGISTER.key)
            if reading.measurement is not schema.ENERGY or not isinstance(register, float):
                continue
            carrier = reading.tags.get(schema.Tag.CARRIER.value, "")
            account = self._account(reading.device, carrier)
            try:
                seen = account.observe(reading.time, register, clock_offset=clock_offset)
            except ValueError as exc:
                self.rejected += 1
                log.warning("energy: %s; kept the reading without a total", exc)
                continue
            _log_event(reading.device, seen)
            out[-1] = _with_total(reading, seen)
            out.extend(seen.hourly)
            state[self.state_key(reading.device, carrier)] = account.state().to_json()
        return out, state


def _with_total(reading: Reading, seen: Observation) -> Reading:
    """The meter reading with its total, flagged suspect if either it or the account says so."""
    fields = {**reading.fields, schema.ENERGY_TOTAL.key: seen.total}
    quality = Quality.SUSPECT if seen.quality is Quality.SUSPECT else reading.quality
    return replace(reading, fields=fields, quality=quality)


def _log_event(device: str, seen: Observation) -> None:
    if seen.clock_step is not None:
        log.warning(
            "energy: %s: the clock stepped %s since the previous reading: the interval is"
            " placed by the monotonic clock, its hours are interpolated",
            device,
            seen.clock_step,
        )
    if seen.event is CounterEvent.RESET:
        log.warning(
            "energy: %s: counter fell to %s: a reset or a new meter, counted in full",
            device,
            seen.register,
        )
    elif seen.event is CounterEvent.WRAP:
        log.info("energy: %s: counter wrapped to %s", device, seen.register)
