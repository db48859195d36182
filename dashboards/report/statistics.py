"""The annual library statistics (Danmarks Statistik's questions): per branch, visits and
opening hours with and without staff, as planned and as they happened.

Per branch and year:

- *visits*: the people counters' entries (``occupancy.entered``) over the year: each counter's
  rise from its last value before the year (or its first in it) to its last in the year; a
  counter that went down was reset and its new value counts in full.
- *admissions in self-service hours*: where entry control exists (the gateway records
  ``admission`` points: per UTC hour and branch mode, the hour's running count), the sum of
  each hour's last ``admitted`` in self-service mode. A branch with no admission point in the
  year has no entry control: the column is empty, not 0.
- *planned hours*: from the branch's calendar (weekly pattern, Danish holidays, municipality
  closures, dated exceptions). A normal week is the weekly pattern as published (wall-clock
  hours); the year is the sum of the real hours of the calendar's timeline from local 1 January
  00:00 to the next, so the spring-forward night has one hour less and the fall-back night one
  more, and every holiday and exception is counted.
- *hours actually open*: from the recorded ``branch_mode`` (written by the gateway at each
  change and at each start): a mode holds from its point until the next. The mode before the
  year's first point is the last one recorded in the year before; time before any record is
  counted as *not recorded*, never guessed. A closure that happened (an override, an emergency)
  therefore counts.

The calendar comes from inventory-shaped YAML (``hours`` of a branch, else ``defaults.hours``;
``municipality_closures`` of both) or from a gateway config's ``hours``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from openbranch.dashboards.report.admissions import admissions
from openbranch.dashboards.report.source import Counter, Point, Source
from openbranch.dashboards.report.tables import Column, Table, Value
from openbranch.edge.core import schema
from openbranch.edge.core.schedule import Mode, OpeningHours
from openbranch.edge.core.yamlsource import load_yaml, validate
from openbranch.edge.hours.calendar import Calendar

__all__ = [
    "ADMISSIONS_NOTE",
    "BranchCalendar",
    "BranchStatistics",
    "build_statistics",
    "load_branch_calendars",
    "statistics_tables",
]

HOUR_NS = 3_600 * 10**9
_LOOKBACK = timedelta(days=366)  # how far before the year the last recorded mode is looked for
_OPEN = (Mode.STAFFED, Mode.SELF_SERVICE)
ADMISSIONS_NOTE = (
    "entry control's admissions (the admission measurement): the cards admitted while the"
    " branch was in self-service mode, each UTC hour's last count; empty where the branch"
    " recorded no admission in the year (no entry control)"
)


# -- the calendars ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BranchCalendar:
    """A branch, its zone and its opening hours (None: no hours known)."""

    id: str
    name: str
    timezone: str = "Europe/Copenhagen"
    hours: OpeningHours | None = None


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the rest of an inventory is provisioning's


class _Municipality(_Model):
    timezone: str = "Europe/Copenhagen"


class _Defaults(_Model):
    hours: OpeningHours | None = None


class _Branch(_Model):
    id: str = Field(min_length=1)
    name: str = ""
    timezone: str | None = None
    hours: OpeningHours | None = None


class _File(_Model):
    municipality: _Municipality = _Municipality()
    defaults: _Defaults = _Defaults()
    branches: list[_Branch] = Field(default_factory=list)


def _merged(own: OpeningHours | None, fleet: OpeningHours | None) -> OpeningHours | None:
    """The branch's hours or the fleet's; the fleet's municipality closures in both (as
    provisioning renders a gateway's hours)."""
    if own is None or fleet is None:
        return own or fleet
    dates = {c.date for c in own.municipality_closures}
    closures = [
        *own.municipality_closures,
        *(c for c in fleet.municipality_closures if c.date not in dates),
    ]
    return own.model_copy(update={"municipality_closures": sorted(closures, key=lambda c: c.date)})


def load_branch_calendars(paths: Sequence[Path | str]) -> dict[str, BranchCalendar]:
    """Branch id -> calendar from inventory-shaped files (a later file wins for an id);
    ``ConfigError`` naming file, line and field for hours that do not validate."""
    out: dict[str, BranchCalendar] = {}
    for path in paths:
        doc = load_yaml(path)
        data = validate(_File, doc)
        for i, b in enumerate(data.branches):
            zone = b.timezone or data.municipality.timezone
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise doc.error(("branches", i, "timezone"), f"unknown zone {zone!r}") from None
            out[b.id] = BranchCalendar(
                id=b.id,
                name=b.name or b.id,
                timezone=zone,
                hours=_merged(b.hours, data.defaults.hours),
            )
    return out


# -- the figures -----------------------------------------------------------------------------


def _hours(ns: int) -> Decimal:
    return Decimal(ns) / HOUR_NS


@dataclass(slots=True)
class BranchStatistics:
    """One branch's year. Hours are exact Decimals (rounded to 0.01 h in the tables)."""

    branch: str
    name: str
    visits: int | None = None
    counters: int = 0
    admissions_self_service: int | None = None  # None: no entry control recorded
    week_staffed: Decimal | None = None
    week_self_service: Decimal | None = None
    year_staffed: Decimal | None = None
    year_self_service: Decimal | None = None
    recorded: dict[str, Decimal] = field(default_factory=dict)  # mode -> hours
    not_recorded: Decimal = Decimal(0)

    @property
    def week_open(self) -> Decimal | None:
        if self.week_staffed is None or self.week_self_service is None:
            return None
        return self.week_staffed + self.week_self_service

    @property
    def year_open(self) -> Decimal | None:
        if self.year_staffed is None or self.year_self_service is None:
            return None
        return self.year_staffed + self.year_self_service

    def actual(self, mode: Mode) -> Decimal:
        return self.recorded.get(mode.value, Decimal(0))

    @property
    def actual_open(self) -> Decimal:
        return sum((self.actual(m) for m in _OPEN), Decimal(0))


def year_bounds(year: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Local 1 January 00:00 of ``year`` and of the next, as UTC instants."""
    return (
        datetime(year, 1, 1, tzinfo=tz).astimezone(UTC),
        datetime(year + 1, 1, 1, tzinfo=tz).astimezone(UTC),
    )


def normal_week(hours: OpeningHours) -> dict[Mode, Decimal]:
    """Hours per mode of the weekly pattern as published (wall clock, no holidays)."""
    out: dict[Mode, Decimal] = defaultdict(Decimal)
    for weekday in range(7):
        for interval in hours.weekly.day(weekday):
            minutes = interval.end_minute - interval.start_minute
            out[interval.mode] += Decimal(minutes) / 60
    return out


def planned(
    hours: OpeningHours, tz: ZoneInfo, start: datetime, end: datetime
) -> dict[Mode, Decimal]:
    """Real hours per mode of the calendar's timeline over [start, end)."""
    out: dict[Mode, Decimal] = defaultdict(Decimal)
    for span in Calendar(hours, tz).timeline(start, end):
        out[span.mode] += Decimal((span.end - span.start) // timedelta(seconds=1)) / 3600
    return out


def _ns(when: datetime) -> int:
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)) * 1000


def recorded_modes(
    points: Iterable[Point], start_ns: int, end_ns: int
) -> tuple[dict[str, Decimal], Decimal]:
    """Hours per recorded mode in [start_ns, end_ns), and the hours before any record.

    ``points`` are one branch's ``branch_mode`` points, earlier ones included (the mode at the
    start is the last one recorded before it)."""
    key = schema.BRANCH_MODE_MODE.key
    changes = sorted(
        ((p.time_ns, str(p.fields[key])) for p in points if key in p.fields), key=lambda c: c[0]
    )  # stable: of two records at one instant, the later written wins
    durations: dict[str, int] = defaultdict(int)
    mode: str | None = None
    cursor = start_ns
    unrecorded = 0
    for time_ns, new in changes:
        if time_ns >= end_ns:
            break
        if time_ns > cursor:
            if mode is None:
                unrecorded += time_ns - cursor
            else:
                durations[mode] += time_ns - cursor
            cursor = time_ns
        mode = new
    if mode is None:
        unrecorded += end_ns - cursor
    else:
        durations[mode] += end_ns - cursor
    return {m: _hours(ns) for m, ns in durations.items()}, _hours(unrecorded)


def visits(
    counters: Iterable[Counter], years: Mapping[str, tuple[int, int]]
) -> tuple[dict[str, int], dict[str, int]]:
    """Entries per branch over its year ``years[branch]`` = (start_ns, end_ns) from
    ``entered`` readings (earlier ones included), and the number of counters per branch. A
    counter's last reading before the year is its baseline; without one, its first reading in
    the year is."""
    last: dict[tuple[str, str], Decimal] = {}
    out: dict[str, int] = defaultdict(int)
    devices: dict[str, set[str]] = defaultdict(set)
    for c in sorted(counters, key=lambda c: (c.branch, c.device, c.time_ns)):
        if c.branch not in years or c.time_ns >= years[c.branch][1]:
            continue
        key = (c.branch, c.device)
        before = last.get(key)
        last[key] = c.value
        if c.time_ns < years[c.branch][0]:
            continue
        devices[c.branch].add(c.device)
        if before is None:
            out[c.branch] += 0
            continue
        out[c.branch] += int(c.value - before if c.value >= before else c.value)
    return dict(out), {b: len(d) for b, d in devices.items()}


def build_statistics(
    source: Source,
    calendars: Mapping[str, BranchCalendar],
    year: int,
    *,
    only: Sequence[str] | None = None,
    now: datetime | None = None,
) -> list[BranchStatistics]:
    """Each branch of ``calendars`` (or of ``only``) for ``year``; the recorded modes are
    counted up to ``now`` when the year is not over yet. Three reads for every branch at
    once (modes, counters, admissions), whatever the number of branches."""
    now = now or datetime.now(UTC)
    wanted = sorted(only) if only else sorted(calendars)
    if not wanted:
        return []
    out, years, untils = [], {}, {}
    for branch in wanted:
        cal = calendars.get(branch) or BranchCalendar(branch, branch)
        tz = ZoneInfo(cal.timezone)
        start, end = year_bounds(year, tz)
        years[branch] = (_ns(start), _ns(end))
        untils[branch] = min(_ns(end), max(_ns(start), _ns(now)))
        stats = BranchStatistics(branch=branch, name=cal.name)
        if cal.hours is not None:
            week = normal_week(cal.hours)
            stats.week_staffed = week[Mode.STAFFED]
            stats.week_self_service = week[Mode.SELF_SERVICE]
            plan = planned(cal.hours, tz, start, end)
            stats.year_staffed = plan[Mode.STAFFED]
            stats.year_self_service = plan[Mode.SELF_SERVICE]
        out.append(stats)
    lo = min(a for a, _ in years.values())
    hi = max(b for _, b in years.values())
    lookback_ns = lo - _LOOKBACK // timedelta(microseconds=1) * 1000
    modes: dict[str, list[Point]] = defaultdict(list)
    for p in source.points(schema.BRANCH_MODE, lookback_ns, max(untils.values()), wanted):
        modes[p.tags.get(schema.Tag.BRANCH.value, "")].append(p)
    counted, counters = visits(source.entered(lo - 24 * HOUR_NS, hi, wanted), years)
    admitted = admissions(source.points(schema.ADMISSION, lo, hi, wanted), years)
    for stats in out:
        b = stats.branch
        stats.recorded, stats.not_recorded = recorded_modes(modes[b], years[b][0], untils[b])
        stats.visits = counted.get(b)
        stats.counters = counters.get(b, 0)
        stats.admissions_self_service = admitted.get(b)
    return out


# -- the tables ------------------------------------------------------------------------------

_H = Decimal("0.01")


def _r(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(_H, rounding=ROUND_HALF_UP)


_COLUMNS = (
    ("branch", "text"),
    ("name", "text"),
    ("visits (people counters)", "int"),
    ("people counters", "int"),
    ("admissions in self-service hours (entry control)", "int"),
    ("staffed hours, normal week", "hours"),
    ("self-service hours, normal week", "hours"),
    ("open hours, normal week", "hours"),
    ("staffed hours, year (calendar)", "hours"),
    ("self-service hours, year (calendar)", "hours"),
    ("open hours, year (calendar)", "hours"),
    ("staffed hours, year (recorded)", "hours"),
    ("self-service hours, year (recorded)", "hours"),
    ("open hours, year (recorded)", "hours"),
    ("emergency or maintenance hours (recorded)", "hours"),
    ("hours not recorded", "hours"),
)


def statistics_tables(rows: Sequence[BranchStatistics], year: int, source: str) -> list[Table]:
    """The Statistics table (one row per branch) and the Notes saying where each figure
    comes from."""
    body: list[tuple[Value, ...]] = []
    for s in rows:
        other = s.actual(Mode.EMERGENCY) + s.actual(Mode.MAINTENANCE)
        body.append(
            (
                s.branch,
                s.name,
                s.visits,
                s.counters,
                s.admissions_self_service,
                _r(s.week_staffed),
                _r(s.week_self_service),
                _r(s.week_open),
                _r(s.year_staffed),
                _r(s.year_self_service),
                _r(s.year_open),
                _r(s.actual(Mode.STAFFED)),
                _r(s.actual(Mode.SELF_SERVICE)),
                _r(s.actual_open),
                _r(other),
                _r(s.not_recorded),
            )
        )
    notes: list[tuple[Value, ...]] = [
        ("year", str(year)),
        ("source", source),
        (
            "visits",
            "people counters: the rise of each counter's 'entered' over the year (a counter"
            " that went down was reset; its new value counts in full)",
        ),
        ("admissions", ADMISSIONS_NOTE),
        (
            "normal week",
            "the weekly pattern as published, in wall-clock hours (no holidays, no exceptions)",
        ),
        (
            "year (calendar)",
            "the calendar's real hours from local 1 January to the next: Danish public holidays,"
            " municipality closures and dated exceptions included; the spring-forward night has"
            " one hour less, the fall-back night one more",
        ),
        (
            "year (recorded)",
            "the branch mode the gateway recorded (branch_mode): each mode from its point until"
            " the next, so closures that happened count; time before the first record is 'not"
            " recorded', and a year not over yet is counted up to now",
        ),
    ]
    return [
        Table(
            "Statistics",
            f"Library statistics {year}",
            tuple(Column(t, k) for t, k in _COLUMNS),
            tuple(body),
        ),
        Table(
            "Notes",
            "Where each figure comes from",
            (Column("what", "text"), Column("how", "text")),
            tuple(notes),
        ),
    ]
