"""The soak's checker (bench/soaklib/invariants.py) against a recorded run: an outbox of real
readings and a real influxd holding them. Clean, it finds nothing; with one violation
injected at a time — a lost reading, a doubled one, an alarm armed while the count said
someone was inside, an alert never cleared, a calendar change that did not happen, a reading
missing from a sink — it names that violation and no other invariant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.soaklib.invariants import (
    AlertWindow,
    Answered,
    Boundary,
    InfluxContent,
    Journaled,
    ListAccepted,
    Pushed,
    Run,
    Sample,
    Violation,
    check,
    parse_point,
)
from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading, Value
from openbranch.edge.telemetry.outbox import Outbox
from tests.services import Influxd
from tests.support.readings import reading_at

T0 = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
S = 1_000_000_000


def ns(when: datetime) -> int:
    return int(when.timestamp()) * S + when.microsecond * 1000


def reading(
    device: str,
    measurement: schema.Measurement,
    fields: dict[str, Value],
    minutes: float,
    **tags: str,
) -> Reading:
    return reading_at(device, measurement, fields, T0 + timedelta(minutes=minutes), tags)


class Recorder:
    """A miniature run: what devices produced, what the gateway accepted and journaled."""

    def __init__(self, path: Path) -> None:
        self.outbox = Outbox(path, sinks=["a"])
        self.pushed: list[Pushed] = []
        self.answered: list[Answered] = []
        self.journaled: list[Journaled] = []

    def accept(self, r: Reading, *, audit: bool = False) -> None:
        self.outbox.append([r], audit=audit)

    def push(self, value: int, minutes: float) -> None:
        r = reading("passage", schema.OCCUPANCY, {"entered": value, "exited": value}, minutes)
        self.pushed.append(Pushed("passage", "occupancy", "entered", value, r.time_ns))
        self.accept(r)

    def poll(self, minutes: float, people: tuple[int, int]) -> None:
        r = reading(
            "counter", schema.OCCUPANCY, {"entered": people[0], "exited": people[1]}, minutes
        )
        for k in range(3):  # three requests answered, a few seconds after the stamp
            self.answered.append(Answered("counter", r.time_ns + (k + 1) * 2 * S, request=k))
        self.accept(r)

    def journal(self, kind: str, message: str, minutes: float, **fields: Value) -> None:
        when = T0 + timedelta(minutes=minutes)
        if kind.startswith("alert "):
            active = message.startswith("RAISED")
            r = reading(
                "gateway",
                schema.ALERT,
                {"message": message.split(": ", 1)[1], "severity": "warning", "active": active},
                minutes,
                kind=kind.removeprefix("alert "),
            )
        else:
            r = reading("gateway", schema.AUDIT, {"message": message, **fields}, minutes, kind=kind)
        self.journaled.append(Journaled(kind, message, ns(when)))
        self.accept(r, audit=True)


Event = tuple[float, Callable[["Recorder"], None]]


def evening(rec: Recorder, extra: list[Event]) -> None:
    """21:00-22:30: people leave, the branch closes at 22:00 and arms once the count is 0;
    ``extra`` events are committed in time order with the rest."""
    events: list[Event] = [(0, lambda r: r.journal("mode", "start -> self_service", 0))]
    for minute in range(90):
        events.append((minute + 0.5, lambda r, m=minute: r.push(m + 1, m + 0.5)))
    inside = [(40, 30)] * 60 + [(40, 33)] * 10 + [(40, 38)] * 10 + [(40, 40)] * 10
    for minute, people in enumerate(inside):
        events.append((minute, lambda r, m=minute, p=people: r.poll(m, p)))
    events += [
        (10, lambda r: r.journal("alert sink_down", "RAISED: influx: 503", 10)),
        (20, lambda r: r.journal("alert sink_down", "cleared: influx: writing again", 20)),
        (60.5, lambda r: r.journal("mode", "self_service -> closed", 60.5)),
        (85, lambda r: r.journal("command", "door.alarm_arm_relay := True (closed/secured)", 85)),
    ]
    for _, event in sorted(events + extra, key=lambda e: e[0]):
        event(rec)


@pytest.fixture
def recorded(tmp_path: Path, influxd: Influxd, influx_db: str) -> Callable[..., Run]:
    """A clean run's record; ``make(inject, at=minute)`` commits ``inject(rec)`` among the
    evening's events at ``minute`` (default: after them), before the run is stored in a
    fresh influxd database and checked."""
    runs = iter(range(100))

    def make(
        inject: Callable[[Recorder], None] = lambda _rec: None,
        *,
        at: float = 1000.0,
        after_store: Callable[[], None] = lambda: None,
    ) -> Run:
        rec = Recorder(tmp_path / f"outbox-{next(runs)}.db")
        influxd.query("DROP SERIES FROM /.*/", influx_db)
        evening(rec, [(at, inject)])
        entries = list(rec.outbox.lines())
        influxd.write("\n".join(e.line for e in entries) + "\n", influx_db)
        after_store()
        rec.outbox.close()
        return Run(
            accepted=ListAccepted(entries),
            sinks=[InfluxContent("a", influxd.url, influx_db)],
            pushed=rec.pushed,
            answered=rec.answered,
            journaled=rec.journaled,
            boundaries=[
                Boundary(ns(T0), "self_service"),
                Boundary(ns(T0 + timedelta(minutes=60)), "closed"),
            ],
            faults=[AlertWindow("influxd refuses", 0, "sink_down")],
            samples=[Sample(float(t), 7, 80_000_000, 20) for t in range(30)],
        )

    return make


def invariants(found: list[Violation]) -> set[str]:
    return {v.invariant for v in found}


def test_a_clean_run_has_no_violation(recorded: Callable[..., Run]) -> None:
    run = recorded()
    assert check(run) == []
    assert run.figures["produced_pushed"] == 90
    assert run.figures["produced_polls"] == 90
    assert run.figures["accepted"] == 90 + 90 + 5
    assert run.figures["stored:a"] == 185
    assert run.figures["alarm_arms"] == 1


def test_a_lost_reading_is_caught(recorded: Callable[..., Run]) -> None:
    def lose(rec: Recorder) -> None:  # the device's message 91 was acknowledged, never accepted
        rec.pushed.append(Pushed("passage", "occupancy", "entered", 91, ns(T0) + 91 * 60 * S))

    found = check(recorded(lose))
    assert invariants(found) == {"produced"}
    assert "occupancy.entered=91 was produced (acknowledged) and never accepted" in str(found)


def test_a_lost_poll_is_caught(recorded: Callable[..., Run]) -> None:
    def lose(rec: Recorder) -> None:  # the counter answered a poll at 22:35; no reading
        for k in range(3):
            rec.answered.append(
                Answered("counter", ns(T0 + timedelta(minutes=95, seconds=k)), request=k)
            )

    found = check(recorded(lose))
    assert invariants(found) == {"produced"}
    assert len(found) == 1  # one poll, three requests
    assert "counter: a poll answered at 2026-11-25 22:35:00" in str(found)


def polled(rec: Recorder, stamp: float, answer: float, *, accepted: bool = True) -> None:
    """A poll of the counter stamped at minute ``stamp`` and answered at minute ``answer``
    (gateway time; three requests a second apart), its reading accepted or lost."""
    r = reading("counter", schema.OCCUPANCY, {"entered": 40, "exited": 40}, stamp)
    for k in range(3):
        rec.answered.append(Answered("counter", ns(T0) + int((answer * 60 + k) * S), request=k))
    if accepted:
        rec.accept(r)


def late_close_and_stepped_back(rec: Recorder, *, lose_after_step: bool = False) -> None:
    polled(rec, 100, 100 + 45 / 60)  # answered 45 s after its stamp (a loaded machine)
    polled(rec, 101, 101 + 1 / 60)  # two polls two seconds apart: each takes its own stamp
    polled(rec, 101 + 2 / 60, 101 + 2.5 / 60)
    polled(rec, 110, 110 + 1 / 60)
    polled(rec, 111, 111 + 1 / 60)
    # the gateway's clock stepped back 3 minutes: gateway time repeats 108-111, interleaved
    polled(rec, 108.5, 108.5 + 1 / 60)
    polled(rec, 109.5, 109.5 + 1 / 60, accepted=not lose_after_step)


def test_late_close_and_stepped_back_polls_are_each_one_reading(
    recorded: Callable[..., Run],
) -> None:
    run = recorded(late_close_and_stepped_back)
    run.poll_span = 60 * S  # the soak allows a real second at its speed
    assert check(run) == []
    assert run.figures["produced_polls"] == 90 + 7


def test_a_poll_lost_after_the_clock_stepped_back_is_caught(
    recorded: Callable[..., Run],
) -> None:
    run = recorded(lambda rec: late_close_and_stepped_back(rec, lose_after_step=True))
    run.poll_span = 60 * S
    found = check(run)
    assert invariants(found) == {"produced"}
    assert len(found) == 1
    assert "counter: a poll answered at 2026-11-25 22:49:31" in str(found)


def test_a_doubled_reading_is_caught(recorded: Callable[..., Run]) -> None:
    def double(rec: Recorder) -> None:  # message 5 accepted a second time, a minute later
        rec.accept(reading("passage", schema.OCCUPANCY, {"entered": 5, "exited": 5}, 95))

    found = check(recorded(double))
    assert invariants(found) == {"produced"}
    assert "occupancy.entered=5 was sent 1x and accepted 2x (doubled)" in str(found)


def test_an_entry_committed_twice_is_caught(recorded: Callable[..., Run]) -> None:
    def twice(rec: Recorder) -> None:  # the same line at the same time: series and time again
        rec.accept(reading("counter", schema.OCCUPANCY, {"entered": 40, "exited": 40}, 89))

    found = check(recorded(twice))
    assert "unique" in invariants(found)
    assert "share series and time (doubled)" in str(found)


def test_an_alarm_armed_while_the_count_said_someone_was_inside_is_caught(
    recorded: Callable[..., Run],
) -> None:
    def early(rec: Recorder) -> None:  # armed at 21:65 = 22:05 while 40 in, 33 out
        rec.journal("command", "door.alarm_arm_relay := True (closed/secured)", 65.5)

    found = check(recorded(early, at=65.5))
    assert invariants(found) == {"alarm"}
    assert "while the count said 7 inside" in str(found)


def test_an_arm_counted_from_the_last_verified_empty_is_caught(
    recorded: Callable[..., Run],
) -> None:
    """The next evening counts from the last arm: that evening the counter had someone out
    twice (-1) and the branch was verified empty, so a raw sum of 0 later is one person inside
    (the engine makes the same daily correction; the raw totals would miss this arm)."""

    def next_evening(rec: Recorder) -> None:
        rec.poll(100, (40, 41))  # someone counted out twice: -1, and empty
        rec.journal("command", "door.alarm_arm_relay := True (closed/secured)", 101)
        rec.poll(102, (41, 41))  # one person in: raw 0, one since the last arm
        rec.journal("command", "door.alarm_arm_relay := True (closed/secured)", 103)

    found = check(recorded(next_evening))
    assert invariants(found) == {"alarm"}
    assert len(found) == 1
    assert "while the count said 1 inside" in str(found)


def test_a_count_stamped_after_an_arm_but_committed_before_it_is_not_its_count(
    recorded: Callable[..., Run],
) -> None:
    """Seen in the 30-day soak (12-14 06:45, 12-20 08:48): the store refused commits, the
    gateway armed (0 inside) and the morning's first visitors came; the commit that finally
    went through held the batch's device readings before its audit entries, so the count of
    07:04 (2 in) came before the arm of 06:45 in commit order. Judged at the arm's moment it
    is 0; with a clock step back near the arm the same count may be from before it (caught)."""

    def after_arm(rec: Recorder) -> None:  # one commit: the count of 22:35, the arm of 22:29:30
        rec.poll(95, (42, 40))
        rec.journal("command", "door.alarm_arm_relay := True (closed/secured)", 89.5)

    late = recorded(after_arm, at=89.5)
    assert check(late) == []
    assert late.figures["alarm_counts_stamped_after"] >= 1
    stepped = dataclasses.replace(
        recorded(after_arm, at=89.5), steps=[(ns(T0) + 90 * 60 * S, -15 * 60 * S)]
    )
    found = check(stepped)
    assert invariants(found) == {"alarm"}
    assert "while the count said 2 inside" in str(found)


def test_a_reading_missing_from_a_sink_is_caught(
    recorded: Callable[..., Run], influxd: Influxd, influx_db: str
) -> None:
    gone = ns(T0 + timedelta(minutes=42))
    run = recorded(
        after_store=lambda: influxd.query(
            f"DELETE FROM occupancy WHERE device = 'counter' AND time = {gone}", influx_db
        )
    )
    found = check(run)
    assert invariants(found) == {"stored"}
    assert "is missing and the bound dropped nothing" in str(found)


def test_a_reading_missing_from_a_sink_is_not_excused_by_fewer_drops(
    recorded: Callable[..., Run], influxd: Influxd, influx_db: str
) -> None:
    run = recorded(
        after_store=lambda: influxd.query(
            f"DELETE FROM occupancy WHERE device = 'counter' AND time < {ns(T0) + 3 * 60 * S}",
            influx_db,
        )
    )
    run.dropped = 2  # the bound dropped two; three are missing
    found = check(run)
    assert invariants(found) == {"stored"}
    assert "3 accepted readings are missing, the bound dropped 2" in str(found)


def test_an_audit_entry_lost_or_doubled_is_caught(recorded: Callable[..., Run]) -> None:
    def lose(rec: Recorder) -> None:
        rec.journaled.append(Journaled("engine", "verified empty", ns(T0) + 80 * 60 * S))

    found = check(recorded(lose))
    assert invariants(found) == {"journal"}
    assert "never accepted: audit engine 'verified empty'" in str(found)

    def double(rec: Recorder) -> None:
        rec.accept(
            reading(
                "gateway", schema.AUDIT, {"message": "self_service -> closed"}, 60.6, kind="mode"
            ),
            audit=True,
        )

    found = check(recorded(double))
    assert "journal" in invariants(found)
    assert "but not journaled (doubled?)" in str(found)


def test_an_alert_never_cleared_is_caught(recorded: Callable[..., Run]) -> None:
    def stuck(rec: Recorder) -> None:
        rec.journal("alert store_failed", "RAISED: disk full", 70)

    found = check(recorded(stuck))
    assert invariants(found) == {"alerts"}
    assert "store_failed was raised" in str(found)


def test_an_alert_raised_near_the_end_and_still_raised_there_may_still_hold(
    recorded: Callable[..., Run],
) -> None:
    """Seen in the 30-day soak of 4071a86: tailgating raised 30 minutes before the end, which
    it clears only after 30 quiet minutes. Still raised in the gateway's status at the end,
    it is not a violation; raised earlier than an hour before the end, it is stuck."""

    def tailgating(rec: Recorder) -> None:
        rec.journal("alert tailgating:door", "RAISED: 1 more person came in", 70)

    def ending(minutes: float, still: set[str]) -> Run:
        run = recorded(tailgating)
        return dataclasses.replace(run, until_ns=ns(T0) + int(minutes * 60 * S), still_true=still)

    assert check(ending(100, {"tailgating:door"})) == []
    assert invariants(check(ending(100, set()))) == {"alerts"}
    stuck = check(ending(131, {"tailgating:door"}))
    assert "tailgating:door was raised" in str(stuck)


def test_a_mode_change_that_did_not_happen_or_happened_twice_is_caught(
    recorded: Callable[..., Run],
) -> None:
    run = recorded()
    late = dataclasses.replace(
        run, boundaries=[*run.boundaries, Boundary(ns(T0) + 75 * 60 * S, "staffed")]
    )
    found = check(late)
    assert invariants(found) == {"modes"}
    assert "the calendar asked for staffed" in str(found)

    def reopened(rec: Recorder) -> None:  # a clock stepped back re-opened the branch
        rec.journal("mode", "closed -> self_service", 70)

    found = check(recorded(reopened, at=70))
    assert invariants(found) == {"modes"}
    assert "closed -> self_service at 2026-11-25 22:10:00 UTC: the calendar asked" in str(found)


def test_a_change_after_the_runs_end_answers_a_boundary_not_listed(
    recorded: Callable[..., Run],
) -> None:
    """The clock runs on while the sinks settle: a change the calendar asked for after the
    run's end is not judged (its boundary is not listed); one before the end still is."""

    def reopened(rec: Recorder) -> None:
        rec.journal("mode", "closed -> self_service", 70)

    after_end = dataclasses.replace(recorded(reopened, at=70), until_ns=ns(T0) + 69 * 60 * S)
    assert check(after_end) == []
    before_end = dataclasses.replace(recorded(reopened, at=70), until_ns=ns(T0) + 71 * 60 * S)
    assert invariants(check(before_end)) == {"modes"}


def test_a_change_due_while_the_gateway_was_down_twice_may_come_after_the_second_return(
    recorded: Callable[..., Run],
) -> None:
    """Staffed at 22:15, the gateway down 22:14-22:16, back for 30 s and killed before its
    first step, down until 22:20: the change at 22:22:30 is in time (counted from 22:16 it
    was not); with no change at all, the violation."""
    downtimes = [(ns(T0) + 74 * 60 * S, ns(T0) + 76 * 60 * S)]
    downtimes.append((ns(T0) + int(76.5 * 60 * S), ns(T0) + 80 * 60 * S))

    def due(run: Run) -> Run:
        return dataclasses.replace(
            run,
            boundaries=[*run.boundaries, Boundary(ns(T0) + 75 * 60 * S, "staffed")],
            downtimes=downtimes,
        )

    came = due(recorded(lambda rec: rec.journal("mode", "closed -> staffed", 82.5), at=82.5))
    assert check(came) == []
    never = check(due(recorded()))
    assert invariants(never) == {"modes"}
    assert "the calendar asked for staffed at 2026-11-25 22:15:00 UTC" in str(never)


def test_a_boundary_passed_entirely_while_the_gateway_was_down_is_not_asked_of_it(
    recorded: Callable[..., Run],
) -> None:
    """Seen in the 30-day soak (12-21, 12-22): self-service at 08:00, staffed at 10:00, the
    gateway down (its store read-only, then repaired) from 07:40 to 10:44: it came back in
    staffed (checked against 10:00) and could never make 08:00's change. Back at 09:00
    instead, it owed self-service (the violation)."""
    boundaries = [
        Boundary(ns(T0) + 75 * 60 * S, "staffed"),
        Boundary(ns(T0) + 77 * 60 * S, "closed"),
    ]

    def down_until(minutes: float) -> Run:
        run = recorded(lambda rec: rec.journal("mode", "start -> closed", 80.5), at=80.5)
        return dataclasses.replace(
            run,
            boundaries=[*run.boundaries, *boundaries],
            downtimes=[(ns(T0) + 74 * 60 * S, ns(T0) + int(minutes * 60 * S))],
        )

    through = down_until(80)
    assert check(through) == []
    assert through.figures["modes_superseded"] == 1
    back_between = check(down_until(76))
    assert invariants(back_between) == {"modes"}
    assert "the calendar asked for staffed at 2026-11-25 22:15:00 UTC" in str(back_between)


def test_a_change_made_just_before_a_downtime_through_the_next_boundary_is_matched(
    recorded: Callable[..., Run],
) -> None:
    """Seen in the 30-day soak of 4071a86 (12-16): self-service at 08:00, the gateway switched
    at 08:00:02 (journaled: its store was read-only) and was down from 08:00:42 until after
    the next boundary. The boundary counts as passed while it was down, and the change it did
    make was then reported as one the calendar never asked for."""
    boundaries = [
        Boundary(ns(T0) + 75 * 60 * S, "staffed"),
        Boundary(ns(T0) + 77 * 60 * S, "closed"),
    ]

    def made(rec: Recorder) -> None:
        rec.journal("mode", "closed -> staffed", 75.03)
        rec.journal("mode", "start -> closed", 80.5)

    run = recorded(made, at=80.5)
    run = dataclasses.replace(
        run,
        boundaries=[*run.boundaries, *boundaries],
        downtimes=[(ns(T0) + int(75.7 * 60 * S), ns(T0) + 80 * 60 * S)],
    )
    assert check(run) == []
    assert run.figures["modes_superseded"] == 1


def test_a_mode_change_made_while_the_store_was_read_only_counts_as_made(
    recorded: Callable[..., Run],
) -> None:
    """The gateway changed mode while its store refused every commit: the change is in its
    journal, excused (never committed), and it was made; the same change journaled without
    an excuse is a lost audit entry, and a boundary it does not answer stays unmet."""
    boundary = Boundary(ns(T0) + 75 * 60 * S, "staffed")

    def journaled_only(excused: str) -> Run:
        run = recorded()
        run = dataclasses.replace(run, boundaries=[*run.boundaries, boundary])
        change = Journaled("mode", "closed -> staffed", ns(T0) + 75 * 60 * S + 5 * S, excused)
        return dataclasses.replace(run, journaled=[*(run.journaled or ()), change])

    made = journaled_only("while the store was read-only (never committed)")
    assert check(made) == []
    assert made.figures["mode_changes_uncommitted"] == 1
    lost = check(journaled_only(""))
    assert invariants(lost) == {"journal", "modes"}


def test_memory_or_descriptors_over_their_bounds_are_caught(recorded: Callable[..., Run]) -> None:
    run = recorded()
    run.samples = [Sample(float(t), 7, 80_000_000 + t * 5_000_000, 20 + 5 * t) for t in range(40)]
    found = check(run)
    assert invariants(found) == {"resources"}
    assert "RSS 275 MB at 39 s (bound 250 MB)" in str(found)
    assert "215 open descriptors at 39 s (bound 200)" in str(found)


@pytest.mark.parametrize(
    "line",
    [
        'alert,branch=b,kind=x message="a, b=c \\"q\\"",active=true 5',
        "energy,branch=b,carrier=electricity,device=m register=1.5,total=2i 7",
        "my\\ measurement,tag\\,x=a\\ b f=1 9",
    ],
)
def test_line_protocol_round_trips_through_the_parser(line: str) -> None:
    point = parse_point(line)
    assert point.time_ns in (5, 7, 9)
    if point.measurement == "alert":
        assert point.fields == {"message": 'a, b=c "q"', "active": True}
    elif point.measurement == "energy":
        assert point.tags == (("branch", "b"), ("carrier", "electricity"), ("device", "m"))
        assert point.fields == {"register": 1.5, "total": 2}
    else:
        assert point.measurement == "my measurement"
        assert point.tags == (("tag,x", "a b"),)
