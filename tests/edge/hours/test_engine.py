"""The branch engine on an accelerated timeline: the closing sequence, stragglers, the cap,
fire, restarts. Each test steps a simulated evening minute by minute."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from openbranch.edge.core.schedule import ClosingPolicy, Mode, OpeningHours
from openbranch.edge.hours.calendar import Calendar, Override
from openbranch.edge.hours.engine import BranchEngine, Decision, Inputs, Occupancy, Phase

CPH = ZoneInfo("Europe/Copenhagen")
HOURS = OpeningHours.model_validate(
    {
        "weekly": {
            "wed": [
                {"start": "10:00", "end": "17:00", "mode": "staffed"},
                {"start": "17:00", "end": "22:00", "mode": "self_service"},
            ]
        }
    }
)


def at(h: int, m: int = 0) -> datetime:
    return datetime(2026, 11, 25, h, m, tzinfo=CPH)


EVENING_START, EVENING_END = at(21, 30), at(23, 30)


def evening(
    present: Callable[[datetime], int | None],
    *,
    start: datetime = EVENING_START,
    end: datetime = EVENING_END,
    fire: Callable[[datetime], bool] = lambda _t: False,
    policy: ClosingPolicy | None = None,
    engine: BranchEngine | None = None,
) -> list[Decision]:
    engine = engine or BranchEngine(calendar=Calendar(HOURS, CPH), policy=policy or ClosingPolicy())
    out, now = [], start
    while now < end:
        out.append(engine.step(now, Inputs(present=present(now), fire_alarm=fire(now))))
        now += timedelta(minutes=1)
    return out


def first(decisions: list[Decision], test: Callable[[Decision], bool]) -> str | None:
    hit = next((d for d in decisions if test(d)), None)
    return None if hit is None else hit.at.strftime("%H:%M")


def test_alarm_armed_only_after_occupancy_reaches_zero() -> None:
    decisions = evening(lambda t: 3 if t < at(22, 3) else 0)
    assert first(decisions, lambda d: d.desired.door == "exit_only") == "22:00"
    assert first(decisions, lambda d: d.phase is Phase.EMPTY) == "22:03"
    assert first(decisions, lambda d: d.desired.alarm == "armed") == "22:08"  # 5 min lights
    assert all(d.desired.alarm == "disarmed" for d in decisions if d.at < at(22, 8))
    secured = [d for d in decisions if d.phase is Phase.SECURED]
    assert secured[0].desired.door == "locked"
    assert secured[0].desired.lights == "off"
    assert not [a for d in decisions for a in d.alerts]


def test_a_straggler_keeps_it_disarmed_and_raises_one_alert() -> None:
    decisions = evening(lambda t: 1 if t < at(22, 40) else 0)
    raised = [(d.at, a) for d in decisions for a in d.alerts if a.kind == "not_empty" and a.active]
    assert len(raised) == 1
    assert raised[0][0] == at(22, 15)  # after the 15-minute grace
    assert first(decisions, lambda d: d.desired.alarm == "armed") == "22:45"
    between = [d for d in decisions if at(22, 15) <= d.at < at(22, 40)]
    assert all(d.desired.door == "exit_only" for d in between)
    calls = [d.at.strftime("%H:%M") for d in between if d.announcements]
    assert calls == ["22:15", "22:20", "22:25", "22:30", "22:35"]  # every 5 minutes
    cleared = [a for d in decisions for a in d.alerts if a.kind == "not_empty" and not a.active]
    assert len(cleared) == 1


def test_the_cap_turns_the_door_exit_only_until_the_count_drops() -> None:
    policy = ClosingPolicy(occupancy_cap=50)
    decisions = evening(
        lambda t: 55 if at(21, 35) <= t < at(21, 40) else 20, policy=policy, end=at(21, 50)
    )
    doors = {d.at.strftime("%H:%M"): d.desired.door for d in decisions}
    assert doors["21:34"] == "access_control"
    assert doors["21:35"] == "exit_only"
    assert doors["21:40"] == "access_control"
    cap = [a.active for d in decisions for a in d.alerts if a.kind == "occupancy_cap"]
    assert cap == [True, False]


def test_fire_mid_evening_is_emergency_until_cleared_and_never_arms() -> None:
    engine = BranchEngine(calendar=Calendar(HOURS, CPH), policy=ClosingPolicy())
    decisions = evening(
        lambda _t: 0, fire=lambda t: at(21, 40) <= t < at(21, 45), engine=engine, end=at(23, 0)
    )
    emergency = [d for d in decisions if d.at >= at(21, 40)]
    assert all(d.mode is Mode.EMERGENCY for d in emergency)  # latched after the input stops
    assert all(d.desired.lights == "on" and d.desired.light_level == 100.0 for d in emergency)
    assert all(d.desired.alarm == "disarmed" for d in emergency)
    assert [a.kind for d in decisions for a in d.alerts] == ["fire"]
    assert engine.clear_emergency("duty officer") == "emergency cleared by duty officer"
    after = evening(lambda _t: 0, start=at(23, 0), end=at(23, 10), engine=engine)
    assert after[0].mode is Mode.CLOSED
    assert first(after, lambda d: d.desired.alarm == "armed") == "23:05"  # verified empty again


def test_announcements_once_each_and_not_replayed_after_a_restart() -> None:
    decisions = evening(lambda _t: 5, end=at(22, 0))
    said = [(d.at.strftime("%H:%M"), text) for d in decisions for text in d.announcements]
    assert said == [
        ("21:45", "The library closes in 15 minutes."),
        ("21:50", "The library closes in 10 minutes."),
        ("21:55", "The library closes in 5 minutes."),
    ]
    restarted = evening(lambda _t: 5, start=at(21, 52), end=at(22, 0))  # a new engine
    assert [d.at.strftime("%H:%M") for d in restarted if d.announcements] == ["21:55"]
    assert restarted[0].notes == ("started in self_service (weekly hours)",)


def test_announcements_follow_an_override_that_closes_early_or_stays_open() -> None:
    """A person closes the branch at 21:00 today: the warnings come before 21:00, and none at
    21:45-21:55 for the calendar's closing that no longer happens. An override that keeps it
    open until 23:00 moves them to 22:45-22:55."""

    def said(override: Override) -> list[str]:
        engine = BranchEngine(calendar=Calendar(HOURS, CPH), policy=ClosingPolicy())
        out, now = [], at(20, 30)
        while now < at(23, 30):
            decision = engine.step(now, Inputs(present=5), [override])
            out += [now.strftime("%H:%M") for t in decision.announcements if "closes in" in t]
            now += timedelta(minutes=1)
        return out

    assert said(Override(Mode.CLOSED, at(21, 0), at(23, 59), "water damage")) == [
        "20:45",
        "20:50",
        "20:55",
    ]
    assert said(Override(Mode.SELF_SERVICE, at(21, 0), at(23, 0), "election night")) == [
        "22:45",
        "22:50",
        "22:55",
    ]


def test_restart_in_closed_hours_verifies_empty_before_arming() -> None:
    decisions = evening(lambda _t: 0, start=at(23, 0), end=at(23, 10))
    assert decisions[0].desired.alarm == "disarmed"
    assert first(decisions, lambda d: d.desired.alarm == "armed") == "23:05"


def test_an_unknown_count_never_arms() -> None:
    decisions = evening(lambda _t: None, start=at(21, 55), end=at(23, 0))
    assert all(d.desired.alarm == "disarmed" for d in decisions)
    kinds = [a.kind for d in decisions for a in d.alerts if a.active]
    assert kinds == ["counter_unavailable", "not_empty"]


def test_occupancy_from_counters_never_below_zero_and_daily_reset() -> None:
    occupancy = Occupancy()
    assert occupancy.update(entered=10, exited=4) == 6
    assert occupancy.update(entered=10, exited=12) == 0  # never below zero
    occupancy.update(entered=120, exited=117)  # 3 "present" at night: counter drift
    occupancy.reset()
    assert occupancy.present == 0
    assert occupancy.update(entered=125, exited=117) == 5
    other_door = Occupancy()  # people leave by another entrance than they came in
    assert other_door.update(entered=0, exited=5) == 0
    assert occupancy.net + other_door.net == 0  # the branch is empty


def test_clear_out_gap_keeps_the_door_exit_only_after_staffed_hours() -> None:
    engine = BranchEngine(calendar=Calendar(HOURS, CPH), policy=ClosingPolicy(clear_out_gap=10))
    decisions = evening(lambda _t: 10, start=at(16, 55), end=at(17, 20), engine=engine)
    doors = {d.at.strftime("%H:%M"): d.desired.door for d in decisions}
    assert doors["16:59"] == "free"  # staffed
    assert doors["17:00"] == "exit_only"  # clearing out: no card access yet
    assert doors["17:09"] == "exit_only"
    assert doors["17:10"] == "access_control"  # self-service begins
