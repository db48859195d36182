"""The branch calendar: weekly hours, Danish holidays, exceptions, closures, overrides, DST, 24:00."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from pydantic import BaseModel, ValidationError

from openbranch.edge.core import schema
from openbranch.edge.core.schedule import CALENDAR_MODES, OPTIONAL_DAYS, Mode, OpeningHours
from openbranch.edge.core.yamlsource import ConfigError, parse_yaml, validate
from openbranch.edge.hours.calendar import Calendar, Override, public_holidays

CPH = ZoneInfo("Europe/Copenhagen")
S, SS, C, M = Mode.STAFFED, Mode.SELF_SERVICE, Mode.CLOSED, Mode.MAINTENANCE

WEEK_YAML = """\
weekly:
  mon: &weekday
    - {start: "07:00", end: "10:00", mode: self_service}
    - {start: "10:00", end: "16:00", mode: staffed}
    - {start: "16:00", end: "22:00", mode: self_service}
  tue: *weekday
  wed: *weekday
  thu:
    - {start: "18:00", end: "22:00", mode: self_service}
    - {start: "10:00", end: "18:00", mode: staffed}
  fri: *weekday
  sat:
    - {start: "08:00", end: "10:00", mode: self_service}
    - {start: "10:00", end: "14:00", mode: staffed}
    - {start: "14:00", end: "24:00", mode: self_service}
  sun:
    - {start: "00:00", end: "02:00", mode: self_service}
    - {start: "10:00", end: "16:00", mode: self_service}
"""


def hours(text: str = WEEK_YAML, **changes: object) -> OpeningHours:
    """The test week (from YAML, as a branch writes it), with top-level keys replaced."""
    data = validate(OpeningHours, parse_yaml(text, name="hours.yaml")).model_dump(mode="json")
    data.update(changes)
    return OpeningHours.model_validate(data)


def cal(**changes: object) -> Calendar:
    return Calendar(hours(**changes), CPH)


def local(y: int, m: int, d: int, h: int = 0, mi: int = 0, *, fold: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=CPH, fold=fold)


def utc(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=UTC)


def changes(c: Calendar, start: datetime, end: datetime, fmt: str = "%a %H:%M") -> list[str]:
    return [f"{t.local:{fmt}} {t.mode_to}" for t in c.transitions(start, end)]


def day_exception(day: str, *intervals: tuple[str, str, str]) -> dict[str, object]:
    return {
        "date": day,
        "intervals": [{"start": a, "end": b, "mode": m} for a, b, m in intervals],
    }


# --- the weekly pattern -------------------------------------------------------------------


def test_a_week_with_several_intervals_per_day() -> None:
    c = cal()
    # Monday 2026-11-23 .. Monday 2026-11-30, no holidays in it
    assert changes(c, local(2026, 11, 23), local(2026, 11, 30)) == [
        *[
            line
            for day in ("Mon", "Tue", "Wed")
            for line in (
                f"{day} 07:00 self_service",
                f"{day} 10:00 staffed",
                f"{day} 16:00 self_service",
                f"{day} 22:00 closed",
            )
        ],
        "Thu 10:00 staffed",  # intervals listed out of order are fine
        "Thu 18:00 self_service",
        "Thu 22:00 closed",
        "Fri 07:00 self_service",
        "Fri 10:00 staffed",
        "Fri 16:00 self_service",
        "Fri 22:00 closed",
        "Sat 08:00 self_service",
        "Sat 10:00 staffed",
        "Sat 14:00 self_service",
        "Sun 02:00 closed",  # Sat 14:00-24:00 runs on into Sun 00:00-02:00
        "Sun 10:00 self_service",
        "Sun 16:00 closed",
    ]
    r = c.mode_at(local(2026, 11, 25, 12))
    assert (r.mode, r.source, r.reason) == (S, "weekly", "weekly hours")


def test_mode_at_at_the_edges_of_an_interval() -> None:
    c = cal()
    wednesday = date(2026, 11, 25)
    cases = [((6, 59), C), ((7, 0), SS), ((9, 59), SS), ((10, 0), S), ((21, 59), SS), ((22, 0), C)]
    for (h, mi), mode in cases:
        assert c.mode_at(local(2026, 11, 25, h, mi)).mode is mode, (h, mi)
    assert c.mode_at(local(2026, 11, 25, 22) - timedelta(microseconds=1)).mode is SS
    assert c.mode_at(local(2026, 11, 25, 12).astimezone(ZoneInfo("America/New_York"))).mode is S
    assert [s.mode for s in c.day_plan(wednesday)] == [C, SS, S, SS, C]


def test_an_interval_ending_24_00() -> None:
    c = cal()
    saturday_night = local(2026, 11, 28, 23, 59)
    assert c.mode_at(saturday_night).mode is SS
    assert c.mode_at(local(2026, 11, 29, 0, 0)).mode is SS
    # 24:00 followed by 00:00 in the same mode: no transition at midnight
    assert changes(c, local(2026, 11, 28, 12), local(2026, 11, 29, 12)) == [
        "Sat 14:00 self_service",
        "Sun 02:00 closed",
        "Sun 10:00 self_service",
    ]
    # 24:00 followed by a different mode, or by nothing: a transition at midnight
    other = cal(
        exceptions=[
            day_exception("2026-11-27", ("20:00", "24:00", "self_service")),
            day_exception("2026-11-29", ("00:00", "01:00", "staffed")),
        ]
    )
    assert changes(other, local(2026, 11, 27, 12), local(2026, 11, 29, 12)) == [
        "Fri 20:00 self_service",
        "Sat 00:00 closed",
        "Sat 08:00 self_service",
        "Sat 10:00 staffed",
        "Sat 14:00 self_service",
        "Sun 00:00 staffed",
        "Sun 01:00 closed",
    ]
    (span,) = [s for s in other.day_plan(date(2026, 11, 27)) if s.mode is SS]
    assert span.end == local(2026, 11, 28).astimezone(UTC)


def test_nothing_covers_means_closed() -> None:
    empty = Calendar(OpeningHours(), CPH)
    r = empty.mode_at(local(2026, 11, 25, 12))
    assert (r.mode, r.source, r.reason) == (C, "default", "outside opening hours")
    assert empty.transitions(local(2026, 1, 1), local(2027, 1, 1)) == []
    gap = cal().mode_at(local(2026, 11, 25, 23))
    assert (gap.mode, gap.source) == (C, "default")


# --- Danish holidays ----------------------------------------------------------------------

# Written out by hand from the Danish calendar (Easter 2026: 5 April, 2027: 28 March).
DANISH_PUBLIC_HOLIDAYS = {
    2026: {
        date(2026, 1, 1): "New Year's Day",
        date(2026, 4, 2): "Maundy Thursday",
        date(2026, 4, 3): "Good Friday",
        date(2026, 4, 5): "Easter Sunday",
        date(2026, 4, 6): "Easter Monday",
        date(2026, 5, 14): "Ascension Day",
        date(2026, 5, 24): "Pentecost",
        date(2026, 5, 25): "Pentecost Monday",
        date(2026, 12, 25): "Christmas Day",
        date(2026, 12, 26): "Second Day of Christmas",
    },
    2027: {
        date(2027, 1, 1): "New Year's Day",
        date(2027, 3, 25): "Maundy Thursday",
        date(2027, 3, 26): "Good Friday",
        date(2027, 3, 28): "Easter Sunday",
        date(2027, 3, 29): "Easter Monday",
        date(2027, 5, 6): "Ascension Day",
        date(2027, 5, 16): "Pentecost",
        date(2027, 5, 17): "Pentecost Monday",
        date(2027, 12, 25): "Christmas Day",
        date(2027, 12, 26): "Second Day of Christmas",
    },
}


def days_of(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=n) for n in range((date(year + 1, 1, 1) - first).days)]


@pytest.mark.parametrize("year", [2026, 2027])
def test_each_danish_public_holiday(year: int) -> None:
    assert public_holidays(year) == DANISH_PUBLIC_HOLIDAYS[year]
    c = cal()
    closed_by_holiday = {}
    for day in days_of(year):
        r = c.mode_at(datetime(day.year, day.month, day.day, 12, tzinfo=CPH))
        if r.source == "holiday":
            assert r.mode is C
            closed_by_holiday[day] = r.reason
    # the default policy: public holidays, 24 and 31 December closed, nothing else
    assert closed_by_holiday == {
        **{day: f"{name}: closed" for day, name in DANISH_PUBLIC_HOLIDAYS[year].items()},
        date(year, 12, 24): "Christmas Eve: closed",
        date(year, 12, 31): "New Year's Eve: closed",
    }


def test_store_bededag_is_gone_from_2024() -> None:
    assert "Great Prayer Day" in public_holidays(2023).values()  # 5 May 2023, the last one
    for year in (2024, 2025, 2026, 2027):
        assert "Great Prayer Day" not in public_holidays(year).values(), year
    # the fourth Friday after Easter is an ordinary Friday now
    r = cal().mode_at(local(2027, 4, 23, 12))
    assert (r.mode, r.source, r.reason) == (S, "weekly", "weekly hours")
    # in 2026 it would have been 1 May, which is Workers' Day (optional, normal by default)
    r = cal().mode_at(local(2026, 5, 1, 12))
    assert (r.mode, r.source, r.reason) == (S, "weekly", "Workers' Day: normal hours")


@pytest.mark.parametrize("year", [2026, 2027])
def test_the_optional_days_written_in_code_match_the_package(year: int) -> None:
    package = holidays.country_holidays(
        "DK", years=year, categories=("optional",), language="en_US"
    )
    assert dict(package.items()) == {
        date(year, m, d): name for m, d, name in OPTIONAL_DAYS.values()
    }


def test_an_optional_holiday_under_each_policy() -> None:
    christmas_eve = local(2026, 12, 24, 12)  # a Thursday: staffed 10-18 in a normal week
    r = cal().mode_at(christmas_eve)
    assert (r.mode, r.source, r.reason) == (C, "holiday", "Christmas Eve: closed")
    normal = cal(holidays={"dec_24": "normal"})
    r = normal.mode_at(christmas_eve)
    assert (r.mode, r.source, r.reason) == (S, "weekly", "Christmas Eve: normal hours")
    special = cal(holidays={"dec_24": [{"start": "09:00", "end": "13:00", "mode": "self_service"}]})
    r = special.mode_at(christmas_eve)
    assert (r.mode, r.source, r.reason) == (SS, "holiday", "Christmas Eve: special hours")
    assert changes(special, local(2026, 12, 24), local(2026, 12, 25)) == [
        "Thu 09:00 self_service",
        "Thu 13:00 closed",
    ]
    # 5 June is normal by default; a branch may close
    assert cal().mode_at(local(2026, 6, 5, 12)).mode is S
    assert cal(holidays={"june_5": "closed"}).mode_at(local(2026, 6, 5, 12)).mode is C


def test_public_holiday_policy_can_be_special_hours() -> None:
    c = cal(holidays={"public": [{"start": "12:00", "end": "16:00", "mode": "self_service"}]})
    r = c.mode_at(local(2026, 4, 6, 13))  # Easter Monday
    assert (r.mode, r.source, r.reason) == (SS, "holiday", "Easter Monday: special hours")
    assert c.mode_at(local(2026, 4, 6, 11)).mode is C
    assert c.mode_at(local(2026, 12, 24, 13)).mode is C  # optional days keep their own rule


def test_a_public_holiday_on_an_optional_day_follows_the_public_rule() -> None:
    # 5 June 2028 is Whit Monday as well as Constitution Day
    c = cal(holidays={"june_5": "normal", "public": "closed"})
    r = c.mode_at(local(2028, 6, 5, 12))
    assert (r.mode, r.source, r.reason) == (C, "holiday", "Pentecost Monday: closed")


# --- exceptions, municipality closures, overrides, resolution order ------------------------


def test_a_dated_exception_over_a_holiday_wins() -> None:
    c = cal(
        exceptions=[
            {
                **day_exception("2026-12-26", ("18:00", "21:00", "staffed")),
                "reason": "reading night",
            }
        ]
    )
    r = c.mode_at(local(2026, 12, 26, 19))  # Second Day of Christmas
    assert (r.mode, r.source, r.reason) == (S, "exception", "reading night")
    r = c.mode_at(local(2026, 12, 26, 12))  # the exception replaces the whole day
    assert (r.mode, r.source, r.reason) == (C, "default", "outside opening hours (reading night)")
    closed = cal(exceptions=[{"date": "2026-11-25", "closed": True, "reason": "staff training"}])
    r = closed.mode_at(local(2026, 11, 25, 12))
    assert (r.mode, r.source, r.reason) == (C, "exception", "staff training")


def test_municipality_closure_and_branch_exception() -> None:
    c = cal(
        municipality_closures=[
            {"date": "2026-11-26", "reason": "municipal closing day"},
            {"date": "2026-11-27", "reason": "municipal closing day"},
        ],
        exceptions=[day_exception("2026-11-27", ("10:00", "14:00", "self_service"))],
    )
    r = c.mode_at(local(2026, 11, 26, 12))
    assert (r.mode, r.source, r.reason) == (C, "municipality", "municipal closing day")
    r = c.mode_at(local(2026, 11, 27, 12))  # the branch's own exception wins
    assert (r.mode, r.source) == (SS, "exception")
    # a closure also beats the holiday rule
    special = [{"start": "10:00", "end": "14:00", "mode": "self_service"}]
    c = cal(holidays={"dec_24": special}, municipality_closures=[{"date": "2026-12-24"}])
    r = c.mode_at(local(2026, 12, 24, 12))
    assert (r.mode, r.source, r.reason) == (C, "municipality", "municipality closing day")


LAYERS = ("override", "exception", "municipality", "holiday")


@pytest.mark.parametrize("present", list(itertools.product([False, True], repeat=4)))
def test_resolution_order(present: tuple[bool, bool, bool, bool]) -> None:
    """Manual override > dated exception > municipality closure > holiday rule > weekly."""
    on = dict(zip(LAYERS, present, strict=True))
    c = cal(
        holidays={
            "dec_24": [{"start": "11:00", "end": "13:00", "mode": "self_service"}]
            if on["holiday"]
            else "normal"
        },
        municipality_closures=[{"date": "2026-12-24"}] if on["municipality"] else [],
        exceptions=[day_exception("2026-12-24", ("12:00", "13:00", "staffed"))]
        if on["exception"]
        else [],
    )
    overrides = [Override(M, local(2026, 12, 24, 12), local(2026, 12, 24, 12, 30), "lift repair")]
    r = c.mode_at(local(2026, 12, 24, 12, 15), overrides if on["override"] else ())
    expected = {
        "override": M,
        "exception": S,
        "municipality": C,
        "holiday": SS,
    }
    winner = next((layer for layer in LAYERS if on[layer]), "weekly")
    assert r.source == winner
    assert r.mode is expected.get(winner, S)  # weekly Thursday: staffed 10-18


def test_overrides_win_expire_and_stack() -> None:
    c = cal()
    late = Override(SS, local(2026, 11, 25, 22), local(2026, 11, 25, 23), "author evening")
    r = c.mode_at(local(2026, 11, 25, 22, 30), [late])
    assert (r.mode, r.source, r.reason) == (SS, "override", "author evening")
    assert c.mode_at(local(2026, 11, 25, 23), [late]).mode is C  # expired
    assert changes(c, local(2026, 11, 25, 21), local(2026, 11, 26), "%H:%M") == ["22:00 closed"]
    with_late = c.transitions(local(2026, 11, 25, 21), local(2026, 11, 26), [late])
    assert [f"{t.local:%H:%M} {t.mode_to} {t.source}" for t in with_late] == [
        "23:00 closed default"
    ]
    # a later-starting override wins where they overlap; equal starts: the later one given
    close_now = Override(C, local(2026, 11, 25, 12), local(2026, 11, 25, 14), "water leak")
    reopen = Override(SS, local(2026, 11, 25, 13), local(2026, 11, 25, 15), "fixed")
    assert [
        f"{t.local:%H:%M} {t.mode_to} {t.source}"
        for t in c.transitions(
            local(2026, 11, 25, 11), local(2026, 11, 25, 17), [reopen, close_now]
        )
    ] == [
        "12:00 closed override",
        "13:00 self_service override",
        "15:00 staffed weekly",
        "16:00 self_service weekly",
    ]
    assert c.mode_at(local(2026, 11, 25, 13, 30), [reopen, close_now]).mode is SS
    same_start = Override(M, close_now.start, close_now.end, "inspection")
    assert c.mode_at(local(2026, 11, 25, 12), [close_now, same_start]).mode is M
    assert c.mode_at(local(2026, 11, 25, 12), [same_start, close_now]).mode is C


def test_an_override_across_midnight_and_beyond_the_range() -> None:
    c = cal()
    night = Override(SS, local(2026, 11, 25, 20), local(2026, 11, 26, 9), "night opening")
    assert changes(c, local(2026, 11, 25, 12), local(2026, 11, 26, 12), "%a %H:%M") == [
        "Wed 16:00 self_service",
        "Wed 22:00 closed",
        "Thu 10:00 staffed",
    ]
    assert [
        f"{t.local:%a %H:%M} {t.mode_to}"
        for t in c.transitions(local(2026, 11, 25, 12), local(2026, 11, 26, 12), [night])
    ] == ["Wed 16:00 self_service", "Thu 09:00 closed", "Thu 10:00 staffed"]
    # a range inside the override has no transitions
    assert c.transitions(local(2026, 11, 25, 21), local(2026, 11, 26, 8), [night]) == []


def test_times_must_be_aware_and_ranges_ordered() -> None:
    c = cal()
    with pytest.raises(ValueError, match="timezone-aware"):
        c.mode_at(datetime(2026, 11, 25, 12))
    with pytest.raises(ValueError, match="before start"):
        c.transitions(local(2026, 11, 26), local(2026, 11, 25))
    with pytest.raises(ValueError, match="before it starts"):
        Override(C, local(2026, 11, 26), local(2026, 11, 25))


# --- the days the clocks change ------------------------------------------------------------


def test_spring_forward_day() -> None:
    # Sunday 2026-03-29: at 02:00 CET the clocks jump to 03:00 CEST; 02:00-03:00 does not exist
    c = cal(exceptions=[day_exception("2026-03-29", ("01:00", "04:00", "staffed"))])
    (span,) = [s for s in c.day_plan(date(2026, 3, 29)) if s.mode is S]
    assert (span.start, span.end) == (utc(2026, 3, 29, 0), utc(2026, 3, 29, 2))
    assert span.end - span.start == timedelta(hours=2)  # 01:00 CET to 04:00 CEST
    # an interval starting inside the missing hour starts when the clocks jump
    c = cal(exceptions=[day_exception("2026-03-29", ("02:30", "05:00", "staffed"))])
    # (the exception replaces the whole Sunday, so Saturday's 14:00-24:00 ends at midnight)
    assert changes(c, local(2026, 3, 29), local(2026, 3, 30), "%H:%M %Z") == [
        "00:00 CET closed",
        "03:00 CEST staffed",
        "05:00 CEST closed",
    ]
    (_, opening, _) = c.transitions(local(2026, 3, 29), local(2026, 3, 30))
    assert opening.at == utc(2026, 3, 29, 1)
    assert c.mode_at(utc(2026, 3, 29, 1) - timedelta(microseconds=1)).mode is C  # 01:59:59 CET
    # an interval wholly inside the missing hour does not happen
    c = cal(exceptions=[day_exception("2026-03-29", ("02:00", "02:45", "staffed"))])
    assert changes(c, local(2026, 3, 29), local(2026, 3, 30), "%H:%M") == ["00:00 closed"]
    plan = c.day_plan(date(2026, 3, 29))
    assert plan[-1].end - plan[0].start == timedelta(hours=23)


def test_fall_back_day() -> None:
    # Sunday 2026-10-25: at 03:00 CEST the clocks go back to 02:00 CET; 02:00-03:00 happens twice
    c = cal(exceptions=[day_exception("2026-10-25", ("01:00", "04:00", "staffed"))])
    (span,) = [s for s in c.day_plan(date(2026, 10, 25)) if s.mode is S]
    assert (span.start, span.end) == (utc(2026, 10, 24, 23), utc(2026, 10, 25, 3))
    assert span.end - span.start == timedelta(hours=4)
    # 02:30 is the first 02:30 (CEST), for a start and for an end
    c = cal(exceptions=[day_exception("2026-10-25", ("02:30", "05:00", "staffed"))])
    (_, opening, _) = c.transitions(local(2026, 10, 25), local(2026, 10, 26))
    assert opening.at == utc(2026, 10, 25, 0, 30)
    assert f"{opening.local:%H:%M %Z}" == "02:30 CEST"
    assert c.mode_at(local(2026, 10, 25, 2, 15, fold=0)).mode is C  # the first 02:15
    assert c.mode_at(local(2026, 10, 25, 2, 15, fold=1)).mode is S  # the second 02:15
    c = cal(exceptions=[day_exception("2026-10-25", ("00:00", "02:30", "self_service"))])
    assert c.mode_at(local(2026, 10, 25, 2, 45, fold=0)).mode is C
    plan = c.day_plan(date(2026, 10, 25))
    assert plan[-1].end - plan[0].start == timedelta(hours=25)


def test_weekly_hours_across_both_clock_changes() -> None:
    c = cal()  # Sunday 00:00-02:00 self-service, 10:00-16:00 self-service
    for day in (date(2026, 3, 29), date(2026, 10, 25)):
        opening = [s for s in c.day_plan(day) if s.mode is SS]
        assert [s.end - s.start for s in opening] == [timedelta(hours=2), timedelta(hours=6)]


# --- transitions agree with mode_at over a whole year ---------------------------------------


def test_transitions_agree_with_mode_at_over_a_year() -> None:
    c = cal(
        holidays={"dec_31": [{"start": "08:00", "end": "13:00", "mode": "self_service"}]},
        exceptions=[
            day_exception("2026-03-29", ("01:30", "02:30", "staffed")),
            day_exception("2026-10-25", ("02:15", "24:00", "staffed")),
            {"date": "2026-06-12", "closed": True},
        ],
        municipality_closures=[{"date": "2026-07-17", "reason": "summer"}],
    )
    overrides = [
        Override(M, local(2026, 2, 3, 9), local(2026, 2, 4, 11), "maintenance"),
        Override(SS, local(2026, 12, 31, 23), local(2027, 1, 1, 1), "new year reading"),
    ]
    start, end = local(2026, 1, 1), local(2027, 1, 1)
    year = c.transitions(start, end, overrides)
    assert 1200 < len(year) < 1300
    for before, t in itertools.pairwise([None, *year]):
        assert t is not None and t.mode_from is not t.mode_to
        assert c.mode_at(t.at, overrides).mode is t.mode_to
        assert c.mode_at(t.at - timedelta(microseconds=1), overrides).mode is t.mode_from
        if before is not None:
            assert before.mode_to is t.mode_from
            assert c.mode_at(before.at + (t.at - before.at) / 2, overrides).mode is t.mode_from
    # cut into days, the year has the same transitions (none invented at the cuts)
    cuts = [start + timedelta(days=n) for n in range(366)]
    pieces = [t for a, b in itertools.pairwise(cuts) for t in c.transitions(a, b, overrides)]
    assert pieces == year


# --- configuration errors ------------------------------------------------------------------


def test_overlapping_intervals_are_a_located_error() -> None:
    text = """\
# Hovedbiblioteket
weekly:
  sun: []
  mon:
    - {start: "07:00", end: "08:00", mode: self_service}
    - {start: "08:00", end: "16:00", mode: staffed}
    - {start: "15:00", end: "18:00", mode: self_service}
"""
    with pytest.raises(ConfigError) as info:
        validate(OpeningHours, parse_yaml(text, name="hours.yaml"))
    assert str(info.value) == "hours.yaml:7: weekly.mon[2]: 15:00-18:00 overlaps 08:00-16:00"


def test_errors_are_located_inside_a_gateway_config() -> None:
    class Gateway(BaseModel):
        hours: OpeningHours

    text = """\
hours:
  weekly:
    mon:
      - {start: "08:00", end: "16:00", mode: staffed}
      - {start: "07:00", end: "20:00", mode: self_service}
      - {start: "15:00", end: "18:00", mode: self_service}
  holidays:
    dec_24: [{start: "09:00", end: "12:00", mode: staffed}, {start: "11:00", end: "13:00", mode: staffed}]
  exceptions:
    - date: 2026-12-23
      intervals:
        - {start: "10:00", end: "24:00", mode: staffed}
        - {start: "00:00", end: "10:30", mode: self_service}
"""
    with pytest.raises(ConfigError) as info:
        validate(Gateway, parse_yaml(text, name="gateway.yaml"))
    assert str(info.value).splitlines() == [
        "gateway.yaml:5: hours.weekly.mon[1]: 07:00-20:00 overlaps 08:00-16:00",
        "gateway.yaml:6: hours.weekly.mon[2]: 15:00-18:00 overlaps 08:00-16:00",
        "gateway.yaml:8: hours.holidays.dec_24[1]: 11:00-13:00 overlaps 09:00-12:00",
        "gateway.yaml:13: hours.exceptions[0].intervals[1]: 00:00-10:30 overlaps 10:00-24:00",
    ]


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            'weekly: {mon: [{start: "18:00", end: "08:00", mode: staffed}]}',
            "hours.yaml:1: weekly.mon[0]: 18:00-08:00: the end must come after the start",
        ),
        (
            'weekly: {mon: [{start: "24:00", end: "24:00", mode: staffed}]}',
            "hours.yaml:1: weekly.mon[0]: 24:00-24:00: the end must come after the start",
        ),
        (
            'weekly: {mon: [{start: "08:00", end: "25:00", mode: staffed}]}',
            "hours.yaml:1: weekly.mon[0].end: '25:00' is not a time of day (HH:MM, 00:00 to 24:00)",
        ),
        (
            'weekly: {mon: [{start: "08:00", end: 16:00, mode: staffed}]}',
            'hours.yaml:1: weekly.mon[0].end: write times in quotes ("16:00"): '
            "YAML reads an unquoted 16:00 as the number 960",
        ),
        (
            'weekly: {mon: [{start: "08:00", end: "16:00", mode: emergency}]}',
            "hours.yaml:1: weekly.mon[0].mode: emergency is set by events and people, not by the "
            "calendar; use one of closed, staffed, self_service",
        ),
        (
            'weekly: {mon: [{start: "08:00", end: "16:00", mode: open}]}',
            "hours.yaml:1: weekly.mon[0].mode: 'open' is not a mode; use one of closed, staffed, "
            "self_service",
        ),
        (
            'weekly: {monday: [{start: "08:00", end: "16:00", mode: staffed}]}',
            "hours.yaml:1: weekly.monday: unknown field",
        ),
        (
            "holidays: {dec_24: shut}",
            "hours.yaml:1: holidays.dec_24: input should be 'closed' or 'normal'",
        ),
        (
            'holidays: {dec_24: {start: "08:00"}}',
            "hours.yaml:1: holidays.dec_24: use closed, normal or a list of intervals",
        ),
        (
            "exceptions: [{date: 2026-12-23, reason: x}]",
            "hours.yaml:1: exceptions[0]: 2026-12-23: give either intervals or closed: true",
        ),
        (
            'exceptions: [{date: 2026-12-23, closed: true, intervals: [{start: "08:00", end: "09:00", mode: staffed}]}]',
            "hours.yaml:1: exceptions[0]: 2026-12-23: give either intervals or closed: true",
        ),
        (
            "exceptions:\n  - {date: 2026-12-23, closed: true}\n  - {date: 2026-12-23, closed: true}",
            "hours.yaml:3: exceptions[1].date: 2026-12-23 is already in exceptions[0]",
        ),
        (
            "municipality_closures:\n  - {date: 2027-01-02}\n  - {date: 2027-01-02}",
            "hours.yaml:3: municipality_closures[1].date: 2027-01-02 is already in "
            "municipality_closures[0]",
        ),
    ],
)
def test_configuration_errors(yaml_text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(OpeningHours, parse_yaml(yaml_text, name="hours.yaml"))
    assert str(info.value) == message


def test_hours_round_trip_and_json_schema() -> None:
    h = hours(
        holidays={"dec_31": [{"start": "08:00", "end": "13:00", "mode": "self_service"}]},
        exceptions=[{"date": "2026-12-23", "closed": True, "reason": "x"}],
        municipality_closures=[{"date": "2027-01-02", "reason": "y"}],
    )
    assert OpeningHours.model_validate(h.model_dump(mode="json")) == h
    assert OpeningHours.model_validate(h.model_dump()) == h
    assert h.weekly.mon[0].mode is SS
    text = str(OpeningHours.model_json_schema())
    assert "'enum': ['closed', 'staffed', 'self_service']" in text
    with pytest.raises(ValidationError):
        OpeningHours.model_validate({"weekly": {"mon": [{"start": "08:00"}]}})


def test_modes_are_the_schema_choices() -> None:
    assert [m.value for m in Mode] == list(schema.BRANCH_MODE_MODE.choices)
    assert [m.value for m in CALENDAR_MODES] == ["closed", "staffed", "self_service"]
