"""Grafana's InfluxQL interpolation, mirrored: what a panel's query becomes before Grafana sends
it to InfluxDB. Grafana cannot run here, so the tests run every dashboard query through this
and then against a real influxd.

The rules mirrored (Grafana's InfluxDB data source and template service):

- ``$timeFilter`` becomes ``time >= <from> and time <= <to>``, where a bound of the form
  ``now`` or ``now-<n><s|m|h|d>`` is written as ``now()`` / ``now() - <n><unit>`` and any
  other bound (``now/d``, ``now-1d/d``, ``now-1y``, ``now-6M``, absolute times) as epoch
  milliseconds (``...ms``). Months and years are calendar steps on the wall clock
  (moment.js's date math: 31 March - 1M is 28/29 February).
  ``frozen_now`` (for tests on recorded data) writes every bound as milliseconds from that
  instant instead of the server's clock.
- A panel's ``timeFrom`` ("7d", "now/d") replaces the dashboard's range by ``now-7d``..now.
- ``$__interval`` / ``$interval`` is the range divided by the panel's max data points, at
  least the panel's ``interval``, rounded to Grafana's steps (``round_interval``) and written
  as ``<n><y|d|h|m|s|ms>``; ``$__interval_ms`` is the same in milliseconds.
- ``${__from}`` / ``${__to}`` (and ``$__from`` / ``$__to``) are the dashboard's range in epoch
  milliseconds, the bounds its ``$timeFilter`` resolves to (the end rounded up, like its
  ``time <=``), from the browser's clock: Grafana's global variables ("$__from and $__to ...
  always interpolated as epoch milliseconds by default", grafana.com/docs/grafana/latest/
  visualizations/dashboards/variables/global-variables/); Grafana 11's dashboards take them
  from the dashboard's range even in a panel with its own ``timeFrom`` (grafana/grafana,
  public/app/features/dashboard-scene/scene/DashboardLevelTimeMacro.ts: "the old __to and
  __from macros that always used the dashboard level time range"). The ``:date`` formats are not mirrored (a query with one is refused).
- A variable is written ``$name``, ``${name}`` or ``[[name]]``. A variable that is neither
  multi-value nor has an All option is inserted as is; otherwise each value is regex-escaped
  and several are joined as ``(a|b)``; All with a custom all value inserts that value
  unescaped. Unknown variables are left as they are (as Grafana does; InfluxDB then refuses
  the query).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "ALL",
    "TimeRange",
    "VariableValue",
    "all_of",
    "interpolate",
    "interval_text",
    "parse_time",
    "regex_escape",
    "round_interval",
]

ALL = "$__all"
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)\]\]|\$\{(\w+)\}")
_FORMATTED = re.compile(r"\$\{__(?:from|to):")
_RELATIVE = re.compile(r"^now-(\d+)([dhms])$")
_MATH = re.compile(r"([+-])(\d+)([smhdwMy])|/([smhdwMy])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# Grafana's rounding steps for $__interval: (below this many ms, use this many ms)
_STEPS = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1500, 1000),
    (3500, 2000),
    (7500, 5000),
    (12500, 10000),
    (17500, 15000),
    (25000, 20000),
    (45000, 30000),
    (90000, 60000),
    (210000, 120000),
    (450000, 300000),
    (750000, 600000),
    (1050000, 900000),
    (1500000, 1200000),
    (2700000, 1800000),
    (5400000, 3600000),
    (9000000, 7200000),
    (16200000, 10800000),
    (32400000, 21600000),
    (86400000, 43200000),
    (604800000, 86400000),
    (1814400000, 604800000),
    (3628800000, 2592000000),
)


def regex_escape(value: str) -> str:
    """Grafana's regex escape for variable values."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def round_interval(ms: float) -> int:
    for below, step in _STEPS:
        if ms < below:
            return step
    return 31536000000


def interval_text(ms: int) -> str:
    """Grafana's short form: the largest whole unit (``1h``, ``30d``, ``500ms``)."""
    for unit, size in (("y", 31536000000), ("d", 86400000), ("h", 3600000), ("m", 60000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    if ms >= 1000 and ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def _interval_ms(text: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text)
    if match is None:
        raise ValueError(f"not an interval: {text!r}")
    n, unit = int(match.group(1)), match.group(2)
    return n if unit == "ms" else n * 1000 * {**_UNITS, "y": 31536000}[unit]


@dataclass(frozen=True, slots=True)
class VariableValue:
    """The current value of a template variable and how it is configured."""

    values: tuple[str, ...]
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None

    @classmethod
    def single(cls, value: str) -> VariableValue:
        return cls((value,))

    def text(self) -> str:
        if self.values == (ALL,):
            if self.all_value is not None:
                return self.all_value  # custom all values are not formatted
            raise ValueError("All selected without a custom all value: pass the values")
        if not self.multi and not self.include_all:
            return self.values[0]
        escaped = [regex_escape(v) for v in self.values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: str = "now-24h"  # Grafana's raw "from"
    end: str = "now"


def parse_time(raw: str, now: datetime, tz: ZoneInfo, *, round_up: bool = False) -> datetime:
    """Grafana date math: ``now``, ``now-7d``, ``now/d``, ``now-1d/d`` (weeks start Monday),
    or an ISO time."""
    if not raw.startswith("now"):
        return datetime.fromisoformat(raw)
    when = now.astimezone(tz)
    for sign, amount, unit, round_to in _MATH.findall(raw[3:]):
        if round_to:
            when = _round(when, round_to, up=round_up)
        elif unit in _UNITS:
            delta = timedelta(seconds=int(amount) * _UNITS[unit])
            when = when + delta if sign == "+" else when - delta
        else:  # M, y: calendar months and years
            months = int(amount) * (12 if unit == "y" else 1)
            when = _calendar(when, months if sign == "+" else -months)
    return when


def _round(when: datetime, unit: str, *, up: bool) -> datetime:
    if unit == "d":
        start = when.replace(hour=0, minute=0, second=0, microsecond=0)
        span = timedelta(days=1)
    elif unit == "w":
        start = (when - timedelta(days=when.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        span = timedelta(days=7)
    elif unit == "h":
        start, span = when.replace(minute=0, second=0, microsecond=0), timedelta(hours=1)
    elif unit in ("M", "y"):
        start = when.replace(
            month=when.month if unit == "M" else 1, day=1, hour=0, minute=0, second=0, microsecond=0
        )
        if not up:
            return start
        return _calendar(start, 1 if unit == "M" else 12) - timedelta(milliseconds=1)
    else:
        raise ValueError(f"unsupported rounding /{unit}")
    if not up:
        return start
    end = (start.replace(tzinfo=None) + span).replace(tzinfo=start.tzinfo)  # wall-clock step
    return end - timedelta(milliseconds=1)


def _calendar(when: datetime, months: int) -> datetime:
    """``when`` moved by whole calendar months on the wall clock (moment.js: the day of the
    month is kept, or the month's last day when it has fewer days)."""
    index = when.year * 12 + when.month - 1 + months
    year, month = divmod(index, 12)
    days = calendar.monthrange(year, month + 1)[1]
    naive = when.replace(tzinfo=None).replace(year=year, month=month + 1, day=min(when.day, days))
    return naive.replace(tzinfo=when.tzinfo)


def _influx_time(raw: str, now: datetime, tz: ZoneInfo, *, round_up: bool, frozen: bool) -> str:
    if not frozen:
        if raw == "now":
            return "now()"
        relative = _RELATIVE.match(raw)
        if relative:
            return f"now() - {relative.group(1)}{relative.group(2)}"
    return f"{int(parse_time(raw, now, tz, round_up=round_up).timestamp() * 1000)}ms"


def interpolate(
    query: str,
    variables: Mapping[str, VariableValue],
    *,
    time_range: TimeRange,
    panel_time_from: str | None = None,
    panel_interval: str | None = None,
    max_data_points: int | None = None,  # the panel's maxDataPoints; None: 1000 (its width)
    now: datetime | None = None,
    frozen_now: bool = False,
    timezone: str = "Europe/Copenhagen",
) -> str:
    """``query`` as Grafana sends it to InfluxDB for a panel (see the module docstring)."""
    tz = ZoneInfo(timezone)
    clock = now or datetime.now(tz)
    dashboard_from = parse_time(time_range.start, clock, tz)  # ${__from}/${__to}: the dashboard's
    dashboard_to = parse_time(time_range.end, clock, tz, round_up=True)
    if panel_time_from is not None:
        start = panel_time_from if panel_time_from.startswith("now") else f"now-{panel_time_from}"
        time_range = TimeRange(start, "now")
    start_raw, end_raw = time_range.start, time_range.end
    begin = parse_time(start_raw, clock, tz)
    finish = parse_time(end_raw, clock, tz, round_up=True)
    frozen = frozen_now and now is not None
    time_filter = (
        f"time >= {_influx_time(start_raw, clock, tz, round_up=False, frozen=frozen)}"
        f" and time <= {_influx_time(end_raw, clock, tz, round_up=True, frozen=frozen)}"
    )
    span_ms = max((finish.timestamp() - begin.timestamp()) * 1000, 1)  # elapsed, across DST
    interval = round_interval(span_ms / (max_data_points or 1000))
    if panel_interval is not None:
        interval = max(interval, _interval_ms(panel_interval))
    if _FORMATTED.search(query):
        raise ValueError(f"a formatted ${{__from:...}} / ${{__to:...}} is not mirrored: {query}")
    builtins = {
        "__from": str(int(dashboard_from.timestamp() * 1000)),
        "__to": str(int(dashboard_to.timestamp() * 1000)),
        "__interval": interval_text(interval),
        "interval": interval_text(interval),
        "__interval_ms": str(interval),
    }
    text = query.replace("$timeFilter", time_filter)

    def value_of(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g is not None)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return variables[name].text()
        return match.group(0)

    return _VARIABLE.sub(value_of, text)


def all_of(values: Sequence[str], *, all_value: str | None = None) -> VariableValue:
    """A multi-value variable with All selected."""
    if all_value is not None:
        return VariableValue((ALL,), multi=True, include_all=True, all_value=all_value)
    return VariableValue(tuple(values), multi=True, include_all=True)
