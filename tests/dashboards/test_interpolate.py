"""The Grafana InfluxQL interpolation mirror, rule by rule (Grafana's InfluxDB data source and
template service: $timeFilter, $__interval, variable formats)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tests.support.interpolate import (
    TimeRange,
    VariableValue,
    all_of,
    interpolate,
    interval_text,
    parse_time,
    regex_escape,
    round_interval,
)

CPH = ZoneInfo("Europe/Copenhagen")
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=CPH)


def run(query: str, variables: dict[str, VariableValue] | None = None, **kw: object) -> str:
    return interpolate(query, variables or {}, now=NOW, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("time_range", "expected"),
    [
        (TimeRange("now-6h", "now"), "time >= now() - 6h and time <= now()"),
        (TimeRange("now-30d", "now-1d"), "time >= now() - 30d and time <= now() - 1d"),
        (  # anything else is epoch milliseconds: local midnight (CET) to now
            TimeRange("now/d", "now"),
            f"time >= {int(datetime(2026, 11, 30, tzinfo=CPH).timestamp() * 1000)}ms"
            " and time <= now()",
        ),
        (
            TimeRange("2026-11-01T00:00:00+00:00", "2026-11-02T00:00:00+00:00"),
            f"time >= {int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)}ms"
            f" and time <= {int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1000)}ms",
        ),
    ],
)
def test_time_filter(time_range: TimeRange, expected: str) -> None:
    assert run("WHERE $timeFilter", time_range=time_range) == f"WHERE {expected}"


def test_frozen_now_writes_relative_bounds_as_milliseconds() -> None:
    text = run("$timeFilter", time_range=TimeRange("now-1h", "now"), frozen_now=True)
    end = int(NOW.timestamp() * 1000)
    assert text == f"time >= {end - 3_600_000}ms and time <= {end}ms"


def test_panel_time_from_overrides_the_dashboard_range() -> None:
    text = run("$timeFilter", time_range=TimeRange("now-6h", "now"), panel_time_from="7d")
    assert text == "time >= now() - 7d and time <= now()"


@pytest.mark.parametrize(
    ("start", "panel_interval", "expected"),
    [
        ("now-24h", None, "1m"),  # 86.4 s per point, rounded to Grafana's 1m step
        ("now-7d", None, "10m"),
        ("now-30d", None, "30m"),
        ("now-1h", None, "5s"),
        ("now-24h", "1h", "1h"),  # the panel's minimum interval wins
        ("now-30d", "1h", "1h"),
    ],
)
def test_interval(start: str, panel_interval: str | None, expected: str) -> None:
    text = run(
        "GROUP BY time($__interval) $interval",
        time_range=TimeRange(start, "now"),
        panel_interval=panel_interval,
    )
    assert text == f"GROUP BY time({expected}) {expected}"


def test_interval_ms_and_rounding_steps() -> None:
    assert run("$__interval_ms", time_range=TimeRange("now-24h", "now")) == "60000"
    assert [round_interval(x) for x in (1, 14, 800, 89_999, 90_000, 10**12)] == [
        10,
        10,
        1000,
        60000,
        120000,
        31536000000,
    ]
    assert [interval_text(x) for x in (500, 1000, 90_000, 3_600_000, 604_800_000)] == [
        "500ms",
        "1s",
        "90s",
        "1h",
        "7d",
    ]


def test_variable_formats() -> None:
    multi = VariableValue(("demo-hasle", "a.b/c"), multi=True, include_all=True)
    one = VariableValue(("demo-hasle",), multi=True, include_all=True)
    raw = VariableValue.single("hasle|viby")
    everything = all_of(["x"], all_value=".*")
    assert regex_escape("a.b/c(d)") == r"a\.b\/c\(d\)"
    query = "/^$branch$/ /^${one}$/ [[raw]] /^($raw)$/ $all $unknown"
    text = run(
        query,
        {"branch": multi, "one": one, "raw": raw, "all": everything},
        time_range=TimeRange(),
    )
    assert (
        text == r"/^(demo-hasle|a\.b\/c)$/ /^demo-hasle$/ hasle|viby /^(hasle|viby)$/ .* $unknown"
    )
    assert all_of(["a", "b"]).text() == "(a|b)"  # All without a custom value: every value


def test_date_math_rounds_in_the_zone_across_dst() -> None:
    autumn = datetime(2026, 10, 25, 12, 0, tzinfo=CPH)  # 25 hours long: CEST -> CET at 03:00
    start = parse_time("now/d", autumn, CPH)
    end = parse_time("now/d", autumn, CPH, round_up=True)
    assert start.isoformat() == "2026-10-25T00:00:00+02:00"
    assert end.timestamp() - start.timestamp() == pytest.approx(25 * 3600 - 0.001)  # wall-clock
    assert end.isoformat() == "2026-10-25T23:59:59.999000+01:00"
    assert parse_time("now-1d/d", NOW, CPH).isoformat() == "2026-11-29T00:00:00+01:00"
    assert parse_time("now/w", NOW, CPH).date().isoformat() == "2026-11-30"  # a Monday


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("now-1y", datetime(2025, 11, 30, 12, 0, tzinfo=CPH)),  # Grafana's "Last 1 year"
        ("now-6M", datetime(2026, 5, 30, 12, 0, tzinfo=CPH)),  # across DST: wall clock kept
        ("now-1y/y", datetime(2025, 1, 1, tzinfo=CPH)),
        ("now/M", datetime(2026, 11, 1, tzinfo=CPH)),
    ],
)
def test_calendar_date_math(raw: str, expected: datetime) -> None:
    assert parse_time(raw, NOW, CPH) == expected


def test_last_year_is_sent_as_milliseconds() -> None:
    """Grafana writes only ``now-<n><s|m|h|d>`` as ``now() - ...`` (InfluxQL has no ``y``)."""
    text = run("$timeFilter", time_range=TimeRange("now-1y", "now"))
    start = int(datetime(2025, 11, 30, 12, 0, tzinfo=CPH).timestamp() * 1000)
    assert text == f"time >= {start}ms and time <= now()"
    assert run("$__interval", time_range=TimeRange("now-1y", "now")) == "6h"


def test_from_and_to_are_the_ranges_bounds_in_milliseconds() -> None:
    """Grafana's global ``${__from}`` / ``${__to}``: epoch milliseconds of the bounds that
    ``$timeFilter`` resolves to (the end rounded up), whatever the range's form."""
    now_ms = int(NOW.timestamp() * 1000)
    assert run("${__from} $__to", time_range=TimeRange("now-1h", "now")) == (
        f"{now_ms - 3_600_000} {now_ms}"
    )
    midnight = datetime(2026, 11, 30, tzinfo=CPH)
    today = run("${__from} ${__to}", time_range=TimeRange("now/d", "now/d"))
    assert today == (
        f"{int(midnight.timestamp() * 1000)}"
        f" {int(datetime(2026, 12, 1, tzinfo=CPH).timestamp() * 1000) - 1}"
    )
    own = run("${__from}", time_range=TimeRange("now-1h", "now"), panel_time_from="7d")
    assert own == str(now_ms - 3_600_000)  # the dashboard's range, not the panel's timeFrom
    with pytest.raises(ValueError, match="not mirrored"):
        run("${__to:date:YYYY-MM}", time_range=TimeRange())


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("now-24h", "15m"),  # 86,400 s / 90 points = 960 s: Grafana's 15 minute step
        ("now-7d", "2h"),
        ("now-30d", "6h"),
        ("now-90d", "1d"),
        ("now-1y", "1d"),
    ],
)
def test_max_data_points_sets_the_interval(start: str, expected: str) -> None:
    """A panel's maxDataPoints divides the range instead of its width (1000 here)."""
    text = run("$__interval", time_range=TimeRange(start, "now"), max_data_points=90)
    assert text == expected
