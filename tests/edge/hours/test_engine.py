"""The branch engine on an accelerated timeline: the closing sequence, stragglers, the cap,
fire, restarts. Each test steps a simulated evening minute by minute."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from openbranch.edge.core.schedule import ClosingPolicy, Mode, OpeningHours
from openbranch.edge.hours.calendar import Calendar, Override
from openbranch.edge.hours.engine import (
    HOLD_BACK_MAX,
    BranchEngine,
    Decision,
    Inputs,
    Occupancy,
    Phase,
)

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


def test_a_counter_lost_after_arming_disarms_and_says_why() -> None:
    """Armed, then the people counter stops answering: the alarm is disarmed (not known to
    be empty), and the note names the counter, not "None present"."""
    decisions = evening(lambda t: 0 if t < at(23, 0) else None, start=at(21, 55), end=at(23, 5))
    assert first(decisions, lambda d: d.desired.alarm == "armed") is not None
    assert decisions[-1].desired.alarm == "disarmed"
    notes = [n for d in decisions for n in d.notes if "disarm and wait" in n]
    assert notes == ["the people counter not answering after closing: disarm and wait"]


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


# -- time that jumps (issue 12 point 9) -------------------------------------------------------
# The gateway steps the engine with the wall clock and the monotonic clock. A timeline here is
# one step per true minute: ``jumps`` say from which true minute the wall clock is off by how
# much; the monotonic reading is the true minute in seconds.

Jump = tuple[int, timedelta]
SECURED = Phase.SECURED


def stepped(start: datetime, minutes: int, jumps: list[Jump]) -> list[tuple[datetime, float, int]]:
    """(wall time, monotonic seconds, true minute) for each true minute from ``start``."""
    out = []
    for minute in range(minutes):
        off = sum((d for m, d in jumps if minute >= m), timedelta())
        out.append((start + timedelta(minutes=minute) + off, minute * 60.0, minute))
    return out


def run_stepped(
    timeline: list[tuple[datetime, float, int]],
    present: Callable[[int], int | None],
    engine: BranchEngine | None = None,
) -> list[Decision]:
    engine = engine or BranchEngine(calendar=Calendar(HOURS, CPH), policy=ClosingPolicy())
    return [
        engine.step(wall, Inputs(present=present(minute)), monotonic=mono)
        for wall, mono, minute in timeline
    ]


def changes(decisions: list[Decision]) -> list[str]:
    """The mode changes the runner would audit, in order."""
    out, mode = [], None
    for d in decisions:
        if d.mode is not mode:
            out.append(f"{mode and mode.value} -> {d.mode.value}")
            mode = d.mode
    return out


def said(decisions: list[Decision]) -> list[str]:
    return [text for d in decisions for text in d.announcements]


def noted(decisions: list[Decision], words: str) -> list[str]:
    return [note for d in decisions for note in d.notes if words in note]


CLOSES_IN = [f"The library closes in {m} minutes." for m in (15, 10, 5)]


@pytest.mark.parametrize(
    ("back", "modes", "held"),
    [
        # 22:01 -> 21:59: held at 22:01 until the clock passes it; stays closed, nothing again
        (timedelta(minutes=2), ["None -> self_service", "self_service -> closed"], 1),
        (timedelta(hours=1), ["None -> self_service", "self_service -> closed"], 1),
        (HOLD_BACK_MAX, ["None -> self_service", "self_service -> closed"], 1),
        # behind the last instant (22:01) by more than HOLD_BACK_MAX: a new time, decided as
        # it is; the branch opens again, once
        (
            HOLD_BACK_MAX + timedelta(minutes=2),
            ["None -> self_service", "self_service -> closed", "closed -> self_service"],
            0,
        ),
    ],
)
def test_a_step_back_over_closing_replays_no_mode_change_and_no_announcement(
    back: timedelta, modes: list[str], held: int
) -> None:
    timeline = stepped(at(21, 30), 60, [(32, -back)])  # true minute 32 is 22:02 -> 22:02 - back
    decisions = run_stepped(timeline, lambda _m: 0)
    assert changes(decisions) == modes
    assert said(decisions) == CLOSES_IN  # each once, before 22:00
    assert len(noted(decisions, "clock went back")) == 1
    assert len(noted(decisions, "until the clock passes it")) == held
    if held:
        # verified empty at 22:00; the lights-off delay runs on the monotonic clock: armed at
        # true minute 35 (22:05 as it was), not an hour or two later on the wall clock
        armed = [m for d, (_, _, m) in zip(decisions, timeline, strict=True) if d.phase is SECURED]
        assert armed[0] == 35
        assert all(d.at >= at(22, 1) for d in decisions[32:])  # decided at the held instant


def test_a_step_back_while_held_follows_the_wall_clock_once_it_passes_again() -> None:
    timeline = stepped(at(21, 50), 30, [(12, -timedelta(minutes=5))])  # 22:01 -> 21:57
    decisions = run_stepped(timeline, lambda _m: 0)
    ats = [d.at.strftime("%H:%M") for d in decisions]
    assert ats[10:18] == ["22:00", "22:01", "22:01", "22:01", "22:01", "22:01", "22:01", "22:02"]


def test_a_step_forward_over_closing_starts_the_whole_closing_sequence() -> None:
    """21:44 -> 22:15 (31 minutes forward) with two people inside who leave 20 true minutes
    later: the branch closes at the first step past 22:00 (exit only, alarm disarmed), the
    three announcements that the jump skipped are noted, not played, the grace period runs
    15 true minutes from the closing, and the alarm is armed 5 true minutes after the count
    reached zero — never because the wall clock says the lights-off delay is over."""
    timeline = stepped(at(21, 40), 50, [(5, timedelta(minutes=31))])
    decisions = run_stepped(timeline, lambda m: 2 if m < 25 else 0)
    by_minute = dict(zip([m for _, _, m in timeline], decisions, strict=True))
    assert changes(decisions) == ["None -> self_service", "self_service -> closed"]
    first_closed = by_minute[5]
    assert first_closed.mode is Mode.CLOSED
    assert first_closed.at == at(22, 16)  # true minute 5 is 21:45 + 31 minutes
    assert first_closed.phase is Phase.CLOSING
    assert first_closed.desired.door == "exit_only"
    assert first_closed.desired.alarm == "disarmed"
    assert said(decisions[:5]) == []  # 21:40-21:44: none due yet
    assert [t for t in said(decisions) if "closes in" in t] == []  # none played late
    skipped = noted(decisions, "announcement skipped")
    assert [n.split(": ")[1].split(" was")[0] for n in skipped] == [
        "closing in 15 minutes",
        "closing in 10 minutes",
        "closing in 5 minutes",
    ]
    assert len(noted(decisions, "clock jumped 0:31:00 forward")) == 1
    straggler = [
        m for m, d in by_minute.items() for a in d.alerts if a.kind == "not_empty" and a.active
    ]
    assert straggler == [20]  # 15 true minutes after the closing began at true minute 5
    armed = [m for m, d in by_minute.items() if d.desired.alarm == "armed"]
    assert armed[0] == 30  # empty at true minute 25, then 5 true minutes of lights
    assert all(by_minute[m].desired.alarm == "disarmed" for m in range(30))


def test_a_jump_forward_while_verified_empty_arms_only_after_the_delay_in_true_time() -> None:
    timeline = stepped(at(21, 58), 12, [(3, timedelta(hours=3))])  # 22:01 empty -> 01:01
    decisions = run_stepped(timeline, lambda _m: 0)
    phases = [d.phase for d in decisions]
    assert phases[2] is Phase.EMPTY  # 22:00, true minute 2: verified empty
    assert phases[3] is Phase.EMPTY  # 01:01 on the wall clock, one true minute later
    assert phases.index(Phase.SECURED) == 7  # 5 true minutes after "verified empty"


def test_without_a_monotonic_reading_durations_follow_the_decision_instant() -> None:
    """The tables above without ``monotonic``: the same jump arms as soon as the wall clock
    says the delay is over (what the gateway avoids by passing its monotonic clock)."""
    engine = BranchEngine(calendar=Calendar(HOURS, CPH), policy=ClosingPolicy())
    phases = [
        engine.step(wall, Inputs(present=0)).phase
        for wall, _mono, _m in stepped(at(21, 58), 6, [(3, timedelta(hours=3))])
    ]
    assert phases[3] is Phase.SECURED
