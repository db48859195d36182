"""The branch calendar: which mode the branch is in at any instant, and when it changes.

Resolution order for a local day: manual override > dated exception > municipality closure >
holiday rule > weekly pattern; any time nothing covers is ``closed``. All interval times are
local wall-clock times in the branch's zone, read the way a person reads published hours:

- ``24:00`` is the end of the day;
- on the spring-forward day a time inside the missing hour means the moment the clocks jump
  (``02:30`` starts at ``03:00``), and an interval ``01:00-04:00`` lasts two real hours;
- on the fall-back day a time inside the repeated hour means its first occurrence, and
  ``01:00-04:00`` lasts four real hours.

Danish public holidays come from the pinned ``holidays`` package (Store Bededag is gone from
2024). The optional days — 1 May, 5 June, 24 and 31 December — each have their own policy.

Pure: no clock is read; every answer is for the instant or range asked about.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import holidays
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from edge import schema

__all__ = [
    "Calendar",
    "DayRule",
    "Exception_",
    "HolidayPolicy",
    "Interval",
    "Mode",
    "OpeningHours",
    "Override",
    "Resolution",
    "Span",
    "Transition",
]


class Mode(StrEnum):
    CLOSED = "closed"
    STAFFED = "staffed"
    SELF_SERVICE = "self_service"
    EMERGENCY = "emergency"  # set by safety inputs only
    MAINTENANCE = "maintenance"  # set by people only


assert {m.value for m in Mode} == set(schema.BRANCH_MODE_MODE.choices)

CALENDAR_MODES = (Mode.CLOSED, Mode.STAFFED, Mode.SELF_SERVICE)
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


def _clock_time(text: str) -> str:
    if not _CLOCK.match(text):
        raise ValueError(f"{text!r} is not a time of day (HH:MM, 00:00 to 24:00)")
    return text


ClockTime = Annotated[str, AfterValidator(_clock_time)]


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(_Model):
    start: ClockTime
    end: ClockTime
    mode: Literal["closed", "staffed", "self_service"]

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if _minutes(self.end) <= _minutes(self.start) or self.start == "24:00":
            raise ValueError(f"{self.start}-{self.end}: the end must come after the start")
        return self

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def _no_overlaps(intervals: Sequence[Interval]) -> Sequence[Interval]:
    ordered = sorted(intervals, key=lambda i: _minutes(i.start))
    for a, b in itertools.pairwise(ordered):
        if _minutes(b.start) < _minutes(a.end):
            raise ValueError(f"{b} overlaps {a}")
    return intervals


Day = Annotated[list[Interval], AfterValidator(_no_overlaps)]
DayRule = Literal["closed", "normal"] | Day


class Weekly(_Model):
    mon: Day = Field(default_factory=list)
    tue: Day = Field(default_factory=list)
    wed: Day = Field(default_factory=list)
    thu: Day = Field(default_factory=list)
    fri: Day = Field(default_factory=list)
    sat: Day = Field(default_factory=list)
    sun: Day = Field(default_factory=list)

    def day(self, weekday: int) -> list[Interval]:
        return [self.mon, self.tue, self.wed, self.thu, self.fri, self.sat, self.sun][weekday]


class HolidayPolicy(_Model):
    """What public holidays and each optional day do to the weekly pattern."""

    public: DayRule = "closed"
    may_1: DayRule = "normal"
    june_5: DayRule = "normal"
    dec_24: DayRule = "closed"
    dec_31: DayRule = "closed"


OPTIONAL_DAYS: Mapping[tuple[int, int], str] = {
    (5, 1): "may_1",
    (6, 5): "june_5",
    (12, 24): "dec_24",
    (12, 31): "dec_31",
}


class Exception_(_Model):  # noqa: N801 - "Exception" is Python's
    """A dated exception: special hours, or closed, for one whole day."""

    date: date
    intervals: Day = Field(default_factory=list)
    closed: bool = False
    reason: str = ""

    @model_validator(mode="after")
    def _one_of(self) -> Exception_:
        if self.closed and self.intervals:
            raise ValueError(f"{self.date}: closed, or intervals, not both")
        return self


class Closure(_Model):
    """A municipality-wide closing day."""

    date: date
    reason: str = ""


class OpeningHours(_Model):
    weekly: Weekly = Field(default_factory=Weekly)
    holidays: HolidayPolicy = Field(default_factory=HolidayPolicy)
    exceptions: list[Exception_] = Field(default_factory=list)
    municipality_closures: list[Closure] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_dates(self) -> OpeningHours:
        seen: set[date] = set()
        for e in self.exceptions:
            if e.date in seen:
                raise ValueError(f"two exceptions for {e.date}")
            seen.add(e.date)
        return self


@dataclass(frozen=True, slots=True)
class Override:
    """A person's decision: ``mode`` from ``start`` until ``end`` (aware datetimes)."""

    mode: Mode
    start: datetime
    end: datetime
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of time in one mode, UTC, end exclusive."""

    start: datetime
    end: datetime
    mode: Mode
    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class Resolution:
    mode: Mode
    source: str  # override | exception | municipality | holiday | weekly | default
    reason: str


@dataclass(frozen=True, slots=True)
class Transition:
    at: datetime  # UTC
    local: datetime
    mode_from: Mode
    mode_to: Mode
    source: str
    reason: str


@lru_cache(maxsize=64)
def _danish_holidays(year: int) -> dict[date, str]:
    return dict(holidays.country_holidays("DK", years=year, categories=("public",)).items())


@lru_cache(maxsize=64)
def _optional_days(year: int) -> dict[date, str]:
    return dict(holidays.country_holidays("DK", years=year, categories=("optional",)).items())


def _to_utc(day: date, clock: str, tz: ZoneInfo) -> datetime:
    """The instant a published local time on ``day`` means (see the module docstring)."""
    if clock == "24:00":
        return _to_utc(day + timedelta(days=1), "00:00", tz)
    hours, minutes = map(int, clock.split(":"))
    local = datetime.combine(day, time(hours, minutes), tzinfo=tz)  # fold=0: the first
    instant = local.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    # In the spring-forward gap: the moment the clocks jump.
    lo = local.replace(fold=1).astimezone(UTC)
    hi = instant
    while hi - lo > timedelta(minutes=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
            lo = mid
        else:
            hi = mid
    return hi.replace(second=0, microsecond=0)


class Calendar:
    def __init__(self, hours: OpeningHours, tz: ZoneInfo | str = "Europe/Copenhagen") -> None:
        self.hours = hours
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._exceptions = {e.date: e for e in hours.exceptions}
        self._closures = {c.date: c for c in hours.municipality_closures}

    def day_rule(self, day: date) -> tuple[list[Interval], str, str]:
        """The intervals of a local day, and which rule gave them (source, reason)."""
        exception = self._exceptions.get(day)
        if exception is not None:
            return (
                ([] if exception.closed else list(exception.intervals)),
                "exception",
                (exception.reason or "dated exception"),
            )
        closure = self._closures.get(day)
        if closure is not None:
            return [], "municipality", closure.reason or "municipality closing day"
        weekly = self.hours.weekly.day(day.weekday())
        name = _danish_holidays(day.year).get(day)
        rule: DayRule | None = None
        if name is not None:
            rule = self.hours.holidays.public
        elif (day.month, day.day) in OPTIONAL_DAYS and day in _optional_days(day.year):
            name = _optional_days(day.year)[day]
            rule = getattr(self.hours.holidays, OPTIONAL_DAYS[(day.month, day.day)])
        if rule is None or rule == "normal":
            return (
                list(weekly),
                ("holiday" if name else "weekly"),
                (f"{name}: normal hours" if name else "weekly hours"),
            )
        if rule == "closed":
            return [], "holiday", f"{name}: closed"
        return list(rule), "holiday", f"{name}: special hours"

    def spans(self, day: date) -> list[Span]:
        """The local day as UTC spans covering it completely (gaps are ``closed``)."""
        intervals, source, reason = self.day_rule(day)
        day_start, day_end = _to_utc(day, "00:00", self.tz), _to_utc(day, "24:00", self.tz)
        out: list[Span] = []
        cursor = day_start
        for interval in sorted(intervals, key=lambda i: _minutes(i.start)):
            start, end = _to_utc(day, interval.start, self.tz), _to_utc(day, interval.end, self.tz)
            if start > cursor:
                out.append(Span(cursor, start, Mode.CLOSED, "default", "outside opening hours"))
            if end > start:
                out.append(Span(start, end, Mode(interval.mode), source, reason))
            cursor = max(cursor, end)
        if cursor < day_end:
            closed_reason = (
                reason if not intervals and source != "weekly" else "outside opening hours"
            )
            closed_source = source if not intervals and source != "weekly" else "default"
            out.append(Span(cursor, day_end, Mode.CLOSED, closed_source, closed_reason))
        return out

    def timeline(
        self, start: datetime, end: datetime, overrides: Sequence[Override] = ()
    ) -> Iterator[Span]:
        """Spans covering [start, end), overrides applied, adjacent equal modes merged."""
        first = start.astimezone(self.tz).date() - timedelta(days=1)
        last = end.astimezone(self.tz).date() + timedelta(days=1)
        spans: list[Span] = []
        day = first
        while day <= last:
            spans.extend(self.spans(day))
            day += timedelta(days=1)
        for override in sorted(overrides, key=lambda o: o.start):
            spans = _apply(spans, override)
        merged: list[Span] = []
        for whole in spans:
            if whole.end <= start or whole.start >= end:
                continue
            span = Span(
                max(whole.start, start), min(whole.end, end), whole.mode, whole.source, whole.reason
            )
            if merged and merged[-1].mode is span.mode and merged[-1].end == span.start:
                prev = merged[-1]
                merged[-1] = Span(prev.start, span.end, prev.mode, prev.source, prev.reason)
            else:
                merged.append(span)
        return iter(merged)

    def mode_at(self, instant: datetime, overrides: Sequence[Override] = ()) -> Resolution:
        span = next(self.timeline(instant, instant + timedelta(microseconds=1), overrides))
        return Resolution(span.mode, span.source, span.reason)

    def transitions(
        self, start: datetime, end: datetime, overrides: Sequence[Override] = ()
    ) -> list[Transition]:
        """Every change of mode in [start, end)."""
        spans = list(self.timeline(start - timedelta(microseconds=1), end, overrides))
        out = []
        for prev, span in itertools.pairwise(spans):
            if span.start >= start:
                out.append(
                    Transition(
                        at=span.start,
                        local=span.start.astimezone(self.tz),
                        mode_from=prev.mode,
                        mode_to=span.mode,
                        source=span.source,
                        reason=span.reason,
                    )
                )
        return out


def _apply(spans: list[Span], override: Override) -> list[Span]:
    start, end = override.start.astimezone(UTC), override.end.astimezone(UTC)
    out: list[Span] = []
    for span in spans:
        if span.end <= start or span.start >= end:
            out.append(span)
            continue
        if span.start < start:
            out.append(Span(span.start, start, span.mode, span.source, span.reason))
        if span.end > end:
            out.append(Span(end, span.end, span.mode, span.source, span.reason))
    out.append(Span(start, end, override.mode, "override", override.reason or "manual override"))
    return sorted(out, key=lambda s: s.start)
