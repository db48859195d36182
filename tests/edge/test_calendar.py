"""The branch calendar: weekly hours, Danish holidays, exceptions, closures, DST, 24:00."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from edge import schema
from edge.calendar import Calendar, Mode, OpeningHours, Override
from edge.yamlsource import ConfigError, parse_yaml, validate

CPH = ZoneInfo("Europe/Copenhagen")
S, SS, C = Mode.STAFFED, Mode.SELF_SERVICE, Mode.CLOSED

WEEKDAY = [
    {"start": "08:00", "end": "10:00", "mode": "self_service"},
    {"start": "10:00", "end": "17:00", "mode": "staffed"},
    {"start": "17:00", "end": "22:00", "mode": "self_service"},
]
HOURS = OpeningHours.model_validate(
    {
        "weekly": {
            "mon": WEEKDAY,
            "tue": WEEKDAY,
            "wed": WEEKDAY,
            "thu": WEEKDAY,
            "fri": WEEKDAY,
            "sat": [
                {"start": "10:00", "end": "14:00", "mode": "staffed"},
                {"start": "14:00", "end": "24:00", "mode": "self_service"},
            ],
            "sun": [{"start": "00:00", "end": "03:00", "mode": "self_service"}],
        }
    }
)


def local(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=CPH)


def cal(**changes: object) -> Calendar:
    data = HOURS.model_dump(mode="json")
    data.update(changes)
    return Calendar(OpeningHours.model_validate(data), CPH)


def test_a_week_with_several_intervals_per_day() -> None:
    c = Calendar(HOURS, CPH)
    # Wednesday 2026-11-25
    assert c.mode_at(local(2026, 11, 25, 7, 59)).mode is C
    assert c.mode_at(local(2026, 11, 25, 8, 0)).mode is SS
    assert c.mode_at(local(2026, 11, 25, 12)).mode is S
    assert c.mode_at(local(2026, 11, 25, 21, 59)).mode is SS
    assert c.mode_at(local(2026, 11, 25, 22)).mode is C
    changes = c.transitions(local(2026, 11, 25), local(2026, 11, 26))
    assert [(t.local.strftime("%H:%M"), t.mode_to) for t in changes] == [
        ("08:00", SS),
        ("10:00", S),
        ("17:00", SS),
        ("22:00", C),
    ]


def test_24_00_runs_into_the_next_day_without_a_transition() -> None:
    c = Calendar(HOURS, CPH)
    # Saturday 2026-11-28 14:00-24:00 self-service, Sunday 00:00-03:00 self-service
    changes = c.transitions(local(2026, 11, 28, 12), local(2026, 11, 29, 12))
    assert [(t.local.strftime("%a %H:%M"), t.mode_to) for t in changes] == [
        ("Sat 14:00", SS),
        ("Sun 03:00", C),
    ]
    assert c.mode_at(local(2026, 11, 28, 23, 59)).mode is SS


DANISH_PUBLIC_HOLIDAYS = {
    2026: [
        "01-01",
        "04-02",
        "04-03",
        "04-05",
        "04-06",
        "05-14",
        "05-24",
        "05-25",
        "12-25",
        "12-26",
    ],
    2027: [
        "01-01",
        "03-25",
        "03-26",
        "03-28",
        "03-29",
        "05-06",
        "05-16",
        "05-17",
        "12-25",
        "12-26",
    ],
}


@pytest.mark.parametrize("year", [2026, 2027])
def test_each_danish_public_holiday_is_closed(year: int) -> None:
    c = Calendar(HOURS, CPH)
    closed, normal = [], []
    day = date(year, 1, 1)
    while day.year == year:
        resolution = c.mode_at(datetime(day.year, day.month, day.day, 12, tzinfo=CPH))
        if resolution.source == "holiday":
            (closed if resolution.mode is C else normal).append(day.strftime("%m-%d"))
        day += timedelta(days=1)
    # default policy: public holidays, 24 and 31 December closed; 1 May and 5 June normal
    assert closed == sorted([*DANISH_PUBLIC_HOLIDAYS[year], "12-24", "12-31"])
    assert normal == ["05-01", "06-05"]
    # Store Bededag (the 4th Friday after Easter) is an ordinary day since 2024
    great_prayer_day = {2026: "05-01", 2027: "04-23"}[year]
    assert great_prayer_day not in DANISH_PUBLIC_HOLIDAYS[year]
    if great_prayer_day != "05-01":
        assert great_prayer_day not in closed


def test_public_holidays_match_the_list_written_by_hand() -> None:
    c = Calendar(HOURS, CPH)
    for year, days in DANISH_PUBLIC_HOLIDAYS.items():
        for md in days:
            m, d = map(int, md.split("-"))
            got = c.day_rule(date(year, m, d))
            assert got[1] == "holiday" and got[0] == [], (year, md, got)


def test_optional_holiday_under_both_policies() -> None:
    christmas_eve = local(2026, 12, 24, 12)  # a Thursday
    assert cal().mode_at(christmas_eve).mode is C
    normal = cal(holidays={"dec_24": "normal"})
    assert normal.mode_at(christmas_eve).mode is S
    assert normal.mode_at(christmas_eve).reason == "Christmas Eve: normal hours"
    special = cal(holidays={"dec_24": [{"start": "09:00", "end": "13:00", "mode": "self_service"}]})
    assert special.mode_at(christmas_eve).mode is SS
    assert special.mode_at(local(2026, 12, 24, 13)).mode is C


def test_dated_exception_wins_over_a_holiday_and_a_closure() -> None:
    c = cal(
        exceptions=[
            {
                "date": "2026-12-26",
                "reason": "Christmas reading night",
                "intervals": [{"start": "18:00", "end": "21:00", "mode": "staffed"}],
            }
        ],
        municipality_closures=[
            {"date": "2026-12-26", "reason": "city closing day"},
            {"date": "2026-11-27", "reason": "staff day"},
        ],
    )
    r = c.mode_at(local(2026, 12, 26, 19))
    assert (r.mode, r.source, r.reason) == (S, "exception", "Christmas reading night")
    assert c.mode_at(local(2026, 12, 26, 12)).mode is C
    staff_day = c.mode_at(local(2026, 11, 27, 12))
    assert (staff_day.mode, staff_day.source) == (C, "municipality")


def test_override_beats_everything_and_expires() -> None:
    c = Calendar(HOURS, CPH)
    late = Override(SS, local(2026, 11, 25, 22), local(2026, 11, 25, 23), "author evening")
    assert c.mode_at(local(2026, 11, 25, 22, 30), [late]).mode is SS
    assert c.mode_at(local(2026, 11, 25, 22, 30), [late]).source == "override"
    assert c.mode_at(local(2026, 11, 25, 23, 0), [late]).mode is C
    close_now = Override(C, local(2026, 11, 25, 12), local(2026, 11, 25, 13), "water leak")
    changes = c.transitions(local(2026, 11, 25, 11), local(2026, 11, 25, 14), [close_now])
    assert [(t.local.strftime("%H:%M"), t.mode_to, t.source) for t in changes] == [
        ("12:00", C, "override"),
        ("13:00", S, "weekly"),
    ]


def test_spring_forward_day() -> None:
    # 2026-03-29 (a Sunday): 02:00-03:00 does not exist in Copenhagen
    c = cal(
        exceptions=[
            {
                "date": "2026-03-29",
                "intervals": [{"start": "01:00", "end": "04:00", "mode": "staffed"}],
            },
            {
                "date": "2026-03-30",
                "intervals": [{"start": "02:30", "end": "05:00", "mode": "staffed"}],
            },
        ]
    )
    (span,) = [s for s in c.spans(date(2026, 3, 29)) if s.mode is S]
    assert span.end - span.start == timedelta(hours=2)  # 01:00 CET to 04:00 CEST
    gap = cal(
        exceptions=[
            {
                "date": "2026-03-29",
                "intervals": [{"start": "02:30", "end": "05:00", "mode": "staffed"}],
            }
        ]
    )
    (opening,) = [
        t for t in gap.transitions(local(2026, 3, 29), local(2026, 3, 30)) if t.mode_to is S
    ]
    assert opening.local.strftime("%H:%M %Z") == "03:00 CEST"  # when the clocks jump
    assert opening.at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_fall_back_day() -> None:
    # 2026-10-25 (a Sunday): 02:00-03:00 happens twice
    c = cal(
        exceptions=[
            {
                "date": "2026-10-25",
                "intervals": [{"start": "01:00", "end": "04:00", "mode": "staffed"}],
            }
        ]
    )
    (span,) = [s for s in c.spans(date(2026, 10, 25)) if s.mode is S]
    assert span.end - span.start == timedelta(hours=4)
    first = cal(
        exceptions=[
            {
                "date": "2026-10-25",
                "intervals": [{"start": "02:30", "end": "05:00", "mode": "staffed"}],
            }
        ]
    )
    (opening,) = [
        t for t in first.transitions(local(2026, 10, 25), local(2026, 10, 26)) if t.mode_to is S
    ]
    assert opening.at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30 (CEST)
    day = first.spans(date(2026, 10, 25))
    assert day[-1].end - day[0].start == timedelta(hours=25)


def test_nothing_covers_means_closed() -> None:
    c = Calendar(OpeningHours(), CPH)
    r = c.mode_at(local(2026, 11, 25, 12))
    assert (r.mode, r.source) == (C, "default")
    assert c.transitions(local(2026, 11, 1), local(2026, 12, 1)) == []


def test_overlapping_intervals_are_a_located_error() -> None:
    text = """\
weekly:
  mon:
    - {start: "08:00", end: "16:00", mode: staffed}
    - {start: "15:00", end: "18:00", mode: self_service}
"""
    with pytest.raises(ConfigError) as info:
        validate(OpeningHours, parse_yaml(text, name="hours.yaml"))
    assert str(info.value) == "hours.yaml:2: weekly.mon: 15:00-18:00 overlaps 08:00-16:00"


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        (
            {"start": "18:00", "end": "08:00", "mode": "staffed"},
            "the end must come after the start",
        ),
        ({"start": "08:00", "end": "25:00", "mode": "staffed"}, "is not a time of day"),
        ({"start": "08:00", "end": "09:00", "mode": "emergency"}, "Input should be"),
    ],
)
def test_bad_intervals(interval: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OpeningHours.model_validate({"weekly": {"mon": [interval]}})


def test_modes_are_the_schema_choices() -> None:
    assert [m.value for m in Mode] == list(schema.BRANCH_MODE_MODE.choices)
