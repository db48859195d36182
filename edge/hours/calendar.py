"""The branch calendar: which mode a branch is in at any instant, and when that changes.

A branch's opening hours are data (``OpeningHours``, embedded in the gateway config as
``hours:`` and in the fleet inventory); ``Calendar`` answers questions about them. This module
is pure: it never reads a clock and does no I/O — every answer is for the instant or range the
caller passes in.

The YAML shape (all times local wall-clock ``HH:MM``, quoted, ``24:00`` allowed as an end)::

    weekly:                               # mon tue wed thu fri sat sun; a missing day is closed
      mon:
        - {start: "08:00", end: "10:00", mode: self_service}
        - {start: "10:00", end: "16:00", mode: staffed}
        - {start: "16:00", end: "22:00", mode: self_service}
      sat:
        - {start: "10:00", end: "24:00", mode: self_service}
    holidays:                             # each: closed | normal | a list of intervals
      public: closed                      # every Danish public holiday (the default)
      may_1: normal                       # Workers' Day (default: normal)
      june_5: [{start: "10:00", end: "14:00", mode: self_service}]   # Constitution Day
      dec_24: closed                      # Christmas Eve (default: closed)
      dec_31: closed                      # New Year's Eve (default: closed)
    exceptions:                           # replace the whole local day
      - {date: 2026-12-23, reason: "reading night",
         intervals: [{start: "10:00", end: "21:00", mode: staffed}]}
      - {date: 2026-11-27, closed: true, reason: "staff training"}
    municipality_closures:                # given to every branch by the inventory
      - {date: 2027-01-02, reason: "municipal closing day"}

Resolution, per instant: manual override > dated exception > municipality closure > holiday
rule > weekly pattern; any time nothing covers is ``closed`` (source ``default``). The modes
``emergency`` and ``maintenance`` are never set by the calendar, only by overrides.

Holidays: the public ones are the project's own table (``edge.hours.danish_holidays``: Easter
and three fixed days; Store Bededag is gone from 2024), tested against the ``holidays``
package's ``DK`` calendar (decision 108). The optional days are written down in
``OPTIONAL_DAYS`` (1 May, 5 June, 24 and 31 December); a test checks that the package agrees.
When an optional day is also a public holiday (5 June 2028 is Whit Monday) the public rule
applies.

Clock changes — times are read the way a person reads published hours:

- ``24:00`` is the end of the day, the same instant as the next day's ``00:00``;
- on the spring-forward day (Copenhagen 2026-03-29, 02:00 -> 03:00) a time inside the missing
  hour means the moment the clocks jump: ``02:30`` starts at 03:00, ``01:00-04:00`` lasts two
  real hours, and an interval wholly inside the missing hour does not happen;
- on the fall-back day (2026-10-25, 03:00 -> 02:00) a time inside the repeated hour means its
  first occurrence: ``02:30`` is the first 02:30 (CEST), ``01:00-04:00`` lasts four real hours.

Errors: bad hours fail pydantic validation with the offending item located, so through
``edge.yamlsource.validate`` they read ``hours.yaml:7: weekly.mon[1]: 15:00-18:00 overlaps
08:00-16:00``. The ``Calendar`` methods raise ``ValueError`` for naive datetimes and reversed
ranges (programming errors, not configuration errors).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from openbranch.edge.core.schedule import (
    DAY_MINUTES,
    OPTIONAL_DAYS,
    DayRule,
    Interval,
    Mode,
    OpeningHours,
)
from openbranch.edge.hours import danish_holidays

__all__ = [
    "Calendar",
    "DayHours",
    "Override",
    "Resolution",
    "Source",
    "Span",
    "Transition",
    "holiday_of",
    "local_instant",
    "public_holidays",
]

Source = Literal["override", "exception", "municipality", "holiday", "weekly", "default"]

_OPTIONAL_BY_DATE = {(m, d): (field, name) for field, (m, d, name) in OPTIONAL_DAYS.items()}


# --- answers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Override:
    """A person's decision: ``mode`` from ``start`` until ``end`` (aware datetimes).

    Overlapping overrides: the one that starts later wins; on equal starts, the later in the
    sequence given.
    """

    mode: Mode
    start: datetime
    end: datetime
    reason: str = ""

    def __post_init__(self) -> None:
        _aware(self.start, "Override.start")
        _aware(self.end, "Override.end")
        if self.end <= self.start:
            raise ValueError(f"override ends ({self.end}) before it starts ({self.start})")


@dataclass(frozen=True, slots=True)
class DayHours:
    """The intervals that govern one local day, and the rule that gave them."""

    intervals: tuple[Interval, ...]
    source: Source
    reason: str


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of time in one mode: UTC, end exclusive."""

    start: datetime
    end: datetime
    mode: Mode
    source: Source
    reason: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """The mode at one instant, which layer decided it, and why."""

    mode: Mode
    source: Source
    reason: str


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of mode: ``at`` in UTC, ``local`` the same instant in the branch's zone."""

    at: datetime
    local: datetime
    mode_from: Mode
    mode_to: Mode
    source: Source
    reason: str


# --- holidays and local time ---------------------------------------------------------------


@lru_cache(maxsize=128)
def public_holidays(year: int) -> Mapping[date, str]:
    """Danish public holidays of ``year`` (English names), from the project's table."""
    return danish_holidays.public_holidays(year)


def holiday_of(day: date) -> tuple[str, str] | None:
    """``(policy field, name)`` if ``day`` is a public holiday or an optional day, else None.

    A public holiday wins over an optional day on the same date.
    """
    name = public_holidays(day.year).get(day)
    if name is not None:
        return "public", name
    return _OPTIONAL_BY_DATE.get((day.month, day.day))


def local_instant(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """The UTC instant that the published wall-clock time ``minute`` on ``day`` means.

    ``minute`` is 0..1440 (1440 = 24:00). In a repeated hour it is the first occurrence; in a
    skipped hour it is the moment the clocks jump (see the module docstring).
    """
    if minute == DAY_MINUTES:
        return local_instant(day + timedelta(days=1), 0, tz)
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    instant = wall.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the earlier offset
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    # Skipped: fold=1 lands before the jump, fold=0 after it; find the jump between them.
    return _jump(wall.replace(tzinfo=tz, fold=1).astimezone(UTC), instant, tz)


def _jump(before: datetime, after: datetime, tz: ZoneInfo) -> datetime:
    """The first second, between ``before`` and ``after``, with ``after``'s UTC offset."""
    lo, hi = int(before.timestamp()), int(after.timestamp())
    offset = before.astimezone(tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value.isoformat()}")


# --- the calendar --------------------------------------------------------------------------


class Calendar:
    """Answers "which mode, and why" for one branch's ``OpeningHours`` in zone ``tz``."""

    def __init__(self, hours: OpeningHours, tz: ZoneInfo | str = "Europe/Copenhagen") -> None:
        self.hours = hours
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._exceptions = {e.date: e for e in hours.exceptions}
        self._closures = {c.date: c for c in hours.municipality_closures}
        self._plans = lru_cache(maxsize=1024)(self._day_plan)

    def hours_of(self, day: date) -> DayHours:
        """The intervals of a local day and the rule that gave them (overrides aside)."""
        exception = self._exceptions.get(day)
        if exception is not None:
            reason = exception.reason or "dated exception"
            return DayHours(tuple(exception.intervals or ()), "exception", reason)
        closure = self._closures.get(day)
        if closure is not None:
            return DayHours((), "municipality", closure.reason or "municipality closing day")
        weekly = tuple(self.hours.weekly.day(day.weekday()))
        holiday = holiday_of(day)
        if holiday is None:
            return DayHours(weekly, "weekly", "weekly hours")
        field, name = holiday
        rule: DayRule = getattr(self.hours.holidays, field)
        if rule == "normal":
            return DayHours(weekly, "weekly", f"{name}: normal hours")
        if rule == "closed":
            return DayHours((), "holiday", f"{name}: closed")
        return DayHours(tuple(rule), "holiday", f"{name}: special hours")

    def day_plan(self, day: date) -> list[Span]:
        """The local day as UTC spans covering it completely, in order (gaps are closed)."""
        return list(self._plans(day))

    def _day_plan(self, day: date) -> tuple[Span, ...]:
        rule = self.hours_of(day)
        cursor = local_instant(day, 0, self.tz)
        day_end = local_instant(day, DAY_MINUTES, self.tz)
        at = self._clock_reader(day, cursor, day_end)
        gap = _gap_reason(rule)
        out: list[Span] = []
        for interval in sorted(rule.intervals, key=lambda i: i.start_minute):
            start, end = at(interval.start_minute), at(interval.end_minute)
            if end <= start:
                continue  # wholly inside a skipped hour
            if start > cursor:
                out.append(Span(cursor, start, Mode.CLOSED, *gap))
            out.append(Span(start, end, interval.mode, rule.source, rule.reason))
            cursor = end
        if cursor < day_end:
            out.append(Span(cursor, day_end, Mode.CLOSED, *gap))
        return tuple(out)

    def _clock_reader(
        self, day: date, midnight: datetime, day_end: datetime
    ) -> Callable[[int], datetime]:
        """Minute of ``day`` -> UTC instant; plain arithmetic unless the clocks change that day."""
        if day_end - midnight == timedelta(days=1) and _offset(midnight, self.tz) == _offset(
            day_end, self.tz
        ):
            return lambda minute: midnight + timedelta(minutes=minute)
        return lambda minute: local_instant(day, minute, self.tz)

    def timeline(
        self, start: datetime, end: datetime, overrides: Sequence[Override] = ()
    ) -> list[Span]:
        """Spans covering [start, end), overrides applied, adjacent spans of one mode merged."""
        _check_range(start, end)
        first = start.astimezone(self.tz).date() - timedelta(days=1)
        last = end.astimezone(self.tz).date() + timedelta(days=1)
        days = (first + timedelta(days=n) for n in range((last - first).days + 1))
        spans = [span for day in days for span in self._plans(day)]
        for override in _by_precedence(overrides):
            if override.start < end and override.end > start:
                spans = _paint(spans, override)
        return _merge(_clip(spans, start, end))

    def mode_at(self, instant: datetime, overrides: Sequence[Override] = ()) -> Resolution:
        """The mode at ``instant`` (aware), which layer decided it, and why."""
        _aware(instant, "instant")
        winner = None
        for override in _by_precedence(overrides):
            if override.start <= instant < override.end:
                winner = override
        if winner is not None:
            return Resolution(winner.mode, "override", winner.reason or "manual override")
        day = instant.astimezone(self.tz).date()
        for candidate in (day, day - timedelta(days=1), day + timedelta(days=1)):
            for span in self._plans(candidate):
                if span.start <= instant < span.end:
                    return Resolution(span.mode, span.source, span.reason)
        raise AssertionError(f"no day plan covers {instant}")  # day plans are contiguous

    def transitions(
        self, start: datetime, end: datetime, overrides: Sequence[Override] = ()
    ) -> list[Transition]:
        """Every change of mode at an instant in [start, end), in order."""
        _check_range(start, end)
        spans = self.timeline(start - timedelta(microseconds=1), end, overrides)
        return [
            Transition(
                at=span.start,
                local=span.start.astimezone(self.tz),
                mode_from=before.mode,
                mode_to=span.mode,
                source=span.source,
                reason=span.reason,
            )
            for before, span in itertools.pairwise(spans)
        ]


def _gap_reason(rule: DayHours) -> tuple[Source, str]:
    """Source and reason for closed time on a day: the rule's if it closes the whole day."""
    if not rule.intervals and rule.source != "weekly":
        return rule.source, rule.reason
    if rule.source == "weekly" and rule.reason == "weekly hours":
        return "default", "outside opening hours"
    return "default", f"outside opening hours ({rule.reason})"


def _check_range(start: datetime, end: datetime) -> None:
    _aware(start, "start")
    _aware(end, "end")
    if end < start:
        raise ValueError(f"end ({end}) is before start ({start})")


def _by_precedence(overrides: Iterable[Override]) -> list[Override]:
    """Lowest precedence first: earlier starts, then earlier in the sequence."""
    return [o for _, o in sorted(enumerate(overrides), key=lambda p: (p[1].start, p[0]))]


def _paint(spans: list[Span], override: Override) -> list[Span]:
    """Contiguous ``spans`` with ``override`` laid over them."""
    start, end = override.start.astimezone(UTC), override.end.astimezone(UTC)
    before = [s for s in spans if s.start < start]
    after = [s for s in spans if s.end > end]
    if before and before[-1].end > start:
        s = before[-1]
        before[-1] = Span(s.start, start, s.mode, s.source, s.reason)
    if after and after[0].start < end:
        s = after[0]
        after[0] = Span(end, s.end, s.mode, s.source, s.reason)
    painted = Span(start, end, override.mode, "override", override.reason or "manual override")
    return [*before, painted, *after]


def _clip(spans: Iterable[Span], start: datetime, end: datetime) -> list[Span]:
    out = [s for s in spans if s.end > start and s.start < end]
    if out and out[0].start < start:
        s = out[0]
        out[0] = Span(start, s.end, s.mode, s.source, s.reason)
    if out and out[-1].end > end:
        s = out[-1]
        out[-1] = Span(s.start, end, s.mode, s.source, s.reason)
    return out


def _offset(instant: datetime, tz: ZoneInfo) -> timedelta | None:
    return instant.astimezone(tz).utcoffset()


def _merge(spans: Iterable[Span]) -> list[Span]:
    """Join neighbours of the same mode (e.g. 24:00 followed by 00:00): no change, no split."""
    out: list[Span] = []
    for span in spans:
        if out and out[-1].mode is span.mode and out[-1].end == span.start:
            prev = out[-1]
            out[-1] = Span(prev.start, span.end, prev.mode, prev.source, prev.reason)
        else:
            out.append(span)
    return out
