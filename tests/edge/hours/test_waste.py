"""The closed-hours waste detector, with figures worked out by hand (issue 18 point 1).

The calendar: every day 08:00-20:00 staffed (Europe/Copenhagen), public holidays closed, so a
normal day has 12 closed hours (20:00-08:00). Rules (edge/hours/waste.py): base load = the
20th percentile by nearest rank of the last 28 days' measured closed hours, once there are 24;
an hour is excess above base + max(50 % of base, 0.2 kWh electricity / 1 kWh heat /
0.01 m³ water); three excess hours in a row raise the alert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading
from openbranch.edge.core.schedule import OpeningHours
from openbranch.edge.hours.calendar import Calendar
from openbranch.edge.hours.waste import (
    AlertChange,
    Judgement,
    MeterState,
    Verdict,
    WasteDetector,
    WasteOutcome,
    closed_by,
    nearest_rank,
)
from tests.support import hourly as support

TZ = ZoneInfo("Europe/Copenhagen")
DAY = [{"start": "08:00", "end": "20:00", "mode": "staffed"}]
HOURS = OpeningHours.model_validate(
    {"weekly": dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), DAY)}
)
EL, DH, WATER = (c.value for c in schema.Carrier)


def hourly(
    first: date, last: date, device: str, carrier: str, use: Callable[[datetime], float]
) -> Iterator[Reading]:
    """``energy_hourly`` readings of branch b1 for every UTC hour of local days first..last."""
    return support.hourly(
        branch="b1", device=device, carrier=carrier, first=first, last=last, tz=TZ, use=use
    )


def detector(saved: dict[str, str] | None = None) -> WasteDetector:
    return WasteDetector(
        branch="b1", closed=closed_by(Calendar(HOURS, TZ)), load=(saved or {}).get, tz=TZ
    )


def at(out: WasteOutcome, local: datetime) -> Judgement:
    (found,) = [j for j in out.judgements if j.hour == local.astimezone(UTC)]
    return found


def light_night(t: datetime) -> float:
    """0.5 kWh/h closed (0.6 on odd days' closed hours), 5 kWh/h open; on 2027-01-11 a 2 kW
    light stays on from 22:00 to 06:00 the next morning."""
    if 8 <= t.hour < 20:
        return 5.0
    light_on = (t.date() == date(2027, 1, 11) and t.hour >= 22) or (
        t.date() == date(2027, 1, 12) and t.hour < 6
    )
    if light_on:
        return 2.5
    return 0.6 if t.day % 2 else 0.5


def test_nearest_rank() -> None:
    assert nearest_rank([0.6, 0.5, 0.7, 0.5, 0.9], 20) == 0.5  # rank ceil(1.0) = 1
    assert nearest_rank([3.0, 1.0, 2.0, 4.0, 5.0, 6.0], 20) == 2.0  # rank ceil(1.2) = 2
    with pytest.raises(ValueError, match="no values"):
        nearest_rank([], 20)


def test_a_light_left_on_from_22_to_06_is_raised_after_three_hours_and_cleared_at_06() -> None:
    d = detector()
    # a week of history, 2027-01-04..10: 84 closed hours, 48 at 0.5 (the even dates) and 36
    # at 0.6; the rank ceil(0.2 x 84) = 17 is a 0.5: base 0.5, threshold 0.5 + max(0.25, 0.2)
    d.observe(hourly(date(2027, 1, 4), date(2027, 1, 10), "main", EL, light_night))
    # then hour by hour, as the gateway closes them
    out = WasteOutcome()
    alerts_at: list[tuple[datetime, bool]] = []
    for reading in hourly(date(2027, 1, 11), date(2027, 1, 12), "main", EL, light_night):
        one = d.observe([reading])
        alerts_at += [(reading.time.astimezone(TZ), a.active) for a in one.alerts]
        out.judgements += one.judgements
        out.readings += one.readings
        out.alerts += one.alerts
    # raised by the third excess hour (00:00-01:00), cleared by the first normal one (06:00)
    assert alerts_at == [
        (datetime(2027, 1, 12, 0, tzinfo=TZ), True),
        (datetime(2027, 1, 12, 6, tzinfo=TZ), False),
    ]

    evening = at(out, datetime(2027, 1, 11, 21, tzinfo=TZ))
    assert (evening.verdict, evening.base_load, evening.threshold) == (Verdict.NORMAL, 0.5, 0.75)
    assert at(out, datetime(2027, 1, 11, 12, tzinfo=TZ)).verdict is None  # open: not judged
    first = at(out, datetime(2027, 1, 11, 22, tzinfo=TZ))
    second = at(out, datetime(2027, 1, 11, 23, tzinfo=TZ))
    assert (first.verdict, first.excess, first.run, second.run) == (Verdict.EXCESS, 2.0, 1, 2)

    raised, cleared = out.alerts
    assert raised == AlertChange(
        kind="closed_hours_waste:main",
        active=True,
        message="main (electricity) has used more than 0.75 kWh an hour for 3 closed hours"
        " since 2027-01-11 22:00: base load 0.50 kWh/h, last hour 2.50 kWh,"
        " 6.00 kWh above the base load so far",
    )
    morning = at(out, datetime(2027, 1, 12, 6, tzinfo=TZ))
    assert (morning.verdict, morning.run) == (Verdict.NORMAL, 0)
    assert cleared == AlertChange(
        kind="closed_hours_waste:main",
        active=False,
        message="main (electricity): closed-hour consumption is back; 8 closed hours from"
        " 2027-01-11 22:00 used 16.00 kWh above the base load",
    )
    # waste by hand: 8 hours x (2.5 - 0.5) = 16 kWh, and the closed_hours readings sum to it;
    # 12 closed hours a day are written, 8 of them excess
    assert sum(float(r.fields[schema.CLOSED_EXCESS.key]) for r in out.readings) == 16.0
    assert len(out.readings) == 24
    assert sum(r.fields[schema.CLOSED_VERDICT.key] == "excess" for r in out.readings) == 8


def test_the_run_survives_a_restart_at_midnight() -> None:
    """Two excess hours before a restart, the third after it: raised all the same."""
    saved: dict[str, str] = {}
    d = detector(saved)
    for out in (
        d.observe(hourly(date(2027, 1, 4), date(2027, 1, 10), "main", EL, light_night)),
        d.observe(hourly(date(2027, 1, 11), date(2027, 1, 11), "main", EL, light_night)),
    ):
        saved.update(out.state)
        assert out.alerts == []
    assert MeterState.from_json(saved["waste:main:electricity"]).run == 2
    again = detector(saved)
    out = again.observe(hourly(date(2027, 1, 12), date(2027, 1, 12), "main", EL, light_night))
    raised, cleared = out.alerts
    assert raised.active and "for 3 closed hours since 2027-01-11 22:00" in raised.message
    assert not cleared.active
    assert cleared.message.endswith(
        "8 closed hours from 2027-01-11 22:00 used 16.00 kWh above the base load"
    )
    # an hour handed over twice (a replayed commit) is judged once
    replay = again.observe(hourly(date(2027, 1, 12), date(2027, 1, 12), "main", EL, light_night))
    assert replay.judgements == [] and replay.alerts == []


def easter_heating(t: datetime) -> float:
    """District heating, 2 kWh/h in setback, 12 kWh/h while the weekly program heats
    (08:00-20:00); the building's program knows Maundy Thursday, Good Friday and Easter Sunday
    2026 but not Easter Monday (6 April)."""
    program_off = {date(2026, 4, 2), date(2026, 4, 3), date(2026, 4, 5)}
    return 12.0 if 8 <= t.hour < 20 and t.date() not in program_off else 2.0


def test_heating_on_a_closed_easter_monday() -> None:
    d = detector()
    d.observe(hourly(date(2026, 3, 30), date(2026, 4, 5), "heat", DH, easter_heating))
    out = d.observe(hourly(date(2026, 4, 6), date(2026, 4, 7), "heat", DH, easter_heating))

    eight = at(out, datetime(2026, 4, 6, 8, tzinfo=TZ))  # closed: Easter Monday
    # base 2.0 (every closed hour so far was 2.0); threshold 2 + max(50 % of 2, 1 kWh) = 3
    assert (eight.verdict, eight.base_load, eight.threshold) == (Verdict.EXCESS, 2.0, 3.0)
    assert eight.excess == 10.0
    raised, cleared = out.alerts
    assert raised.active and "for 3 closed hours since 2026-04-06 08:00" in raised.message
    assert "30.00 kWh above the base load so far" in raised.message
    assert at(out, datetime(2026, 4, 6, 10, tzinfo=TZ)).run == 3
    # cleared by the 20:00 hour (setback again): 12 hours x (12 - 2) = 120 kWh above base
    assert not cleared.active
    assert cleared.message.endswith(
        "12 closed hours from 2026-04-06 08:00 used 120.00 kWh above the base load"
    )
    # Tuesday 08:00 is open again: not judged; Easter Monday had 24 closed hours
    assert at(out, datetime(2026, 4, 7, 8, tzinfo=TZ)).verdict is None
    monday = [j for j in out.judgements if j.hour.astimezone(TZ).date() == date(2026, 4, 6)]
    assert len(monday) == 24 and all(j.closed for j in monday)
    assert sum(j.excess for j in monday) == 120.0


def test_a_flat_closed_hour_load_is_normal_every_hour() -> None:
    """0.48, 0.50, 0.52 kWh in turn in every closed hour (a fridge cycling): base 0.48, the
    threshold 0.48 + max(0.24, 0.2) = 0.72; every judged hour normal, no alert."""
    cycle = (0.48, 0.50, 0.52)

    def flat(t: datetime) -> float:
        return 6.0 if 8 <= t.hour < 20 else cycle[t.hour % 3]

    out = detector().observe(hourly(date(2027, 2, 1), date(2027, 2, 14), "main", EL, flat))
    closed = [j for j in out.judgements if j.closed]
    assert len(closed) == 14 * 12
    assert {j.verdict for j in closed[:24]} == {Verdict.LEARNING}
    judged = closed[24:]
    assert {j.verdict for j in judged} == {Verdict.NORMAL}
    assert all(j.base_load == 0.48 and j.threshold == pytest.approx(0.72) for j in judged)
    assert max(j.consumption for j in judged) == 0.52
    assert out.alerts == [] and sum(j.excess for j in judged) == 0.0


def test_water_running_at_night_and_an_interpolated_hour() -> None:
    """Water: base 0 m³ at night, so the margin is the minimum, 0.01 m³ (10 litres); a tap
    left running from 01:00 at 0.3 m³/h. An interpolated hour in the run is not judged and
    neither ends nor extends it."""

    def water(t: datetime) -> float:
        if 8 <= t.hour < 20:
            return 0.2
        return 0.3 if t.date() == date(2027, 3, 10) and 1 <= t.hour < 5 else 0.0

    d = detector()
    d.observe(hourly(date(2027, 3, 1), date(2027, 3, 9), "water", WATER, water))
    readings = list(hourly(date(2027, 3, 10), date(2027, 3, 10), "water", WATER, water))
    gap = datetime(2027, 3, 10, 2, tzinfo=TZ).astimezone(UTC)
    readings = [
        r
        if r.time != gap
        else Reading(
            branch=r.branch,
            device=r.device,
            measurement=r.measurement,
            fields={**r.fields, schema.HOURLY_QUALITY.key: "interpolated"},
            tags=r.tags,
            time=r.time,
        )
        for r in readings
    ]
    out = d.observe(readings)
    one, two, three, four = (at(out, datetime(2027, 3, 10, h, tzinfo=TZ)) for h in (1, 2, 3, 4))
    assert (one.verdict, one.base_load, one.threshold, one.run) == (
        Verdict.EXCESS,
        0.0,
        0.01,
        1,
    )
    assert (two.verdict, two.run) == (Verdict.NOT_MEASURED, 1)
    assert (three.run, four.run) == (2, 3)
    raised, cleared = out.alerts
    assert raised.kind == "closed_hours_waste:water"
    assert "more than 0.01 m³ an hour for 3 closed hours since 2027-03-10 01:00" in raised.message
    assert "0.90 m³ above the base load" in cleared.message  # 3 judged hours x 0.3 m³
