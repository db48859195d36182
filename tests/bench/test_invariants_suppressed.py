"""The soak checker's ``produced`` invariant under report by exception (decision 104): a poll
whose reading the gateway did not write is fine only when each value it produced is within
its point's deadband of its series' last accepted value, and that value is less than a
heartbeat old. The gateway's own decisions (``ChangeFilter``) make the clean record; each
test then breaks one rule and the checker must name it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.soaklib.invariants import Answered, ListAccepted, Run, Violation, check
from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading
from openbranch.edge.telemetry.changes import ChangeFilter
from openbranch.edge.telemetry.outbox import Entry, Outbox

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
S = 1_000_000_000
HEARTBEAT = 900.0
BAND = 0.2  # the room's temperature deadband
FIRE = (("kind", "fire_alarm"),)
MINUTES = 60


def temperature(minute: int) -> float:
    """A slow drift with a jump at minute 30 and a quiet hour's end (unchanged from 40)."""
    if minute >= 40:
        return 22.0
    return round(21.0 + 0.05 * minute + (0.5 if minute >= 30 else 0.0), 2)


def fire(minute: int) -> bool:
    return 20 <= minute < 22


def readings(minute: int) -> list[Reading]:
    when = T0 + timedelta(minutes=minute)
    return [
        Reading(
            branch="b",
            device="room",
            measurement=schema.INDOOR,
            fields={"temperature_c": temperature(minute)},
            time=when,
        ),
        Reading(
            branch="b",
            device="room",
            measurement=schema.ALERT,
            fields={"active": fire(minute)},
            tags=dict(FIRE),
            time=when,
        ),
    ]


def answers(minute: int, *, excused: str = "") -> list[Answered]:
    """The poll's two requests, answered 1 and 2 s after its stamp, with their values."""
    stamp = int((T0 + timedelta(minutes=minute)).timestamp()) * S
    return [
        Answered(
            "room",
            stamp + 1 * S,
            excused,
            0,
            (("indoor", (), "temperature_c", temperature(minute)),),
        ),
        Answered("room", stamp + 2 * S, excused, 1, (("alert", FIRE, "active", fire(minute)),)),
    ]


def record(
    tmp_path: Path, *, drop: Callable[[Reading], bool] = lambda _r: False, excused: int = -1
) -> Run:
    """An hour of polls a minute apart, written as the gateway decides; ``drop`` takes out
    readings the gateway wrote (a wrong suppression); the poll at minute ``excused`` was cut
    by a fault (answered, never decoded: the gateway never saw it)."""
    changes = ChangeFilter(
        heartbeat=HEARTBEAT, deadbands={"room": {("indoor", "temperature_c"): BAND}}
    )
    outbox = Outbox(tmp_path / "outbox.db")
    answered = []
    for minute in range(MINUTES):
        answered += answers(minute, excused="a fault" if minute == excused else "")
        if minute == excused:
            continue
        split = changes.split(readings(minute))
        changes.apply(split)
        outbox.append([r for r in split.written if not drop(r)])
    entries = list(outbox.lines())
    outbox.close()
    return Run(
        accepted=ListAccepted(entries),
        answered=answered,
        heartbeat=int(HEARTBEAT * S),
        deadbands={("room", "indoor", "temperature_c"): BAND},
    )


def produced(run: Run) -> list[Violation]:
    return [v for v in check(run) if v.invariant == "produced"]


def at(minute: int, measurement: str) -> Callable[[Reading], bool]:
    return lambda r: r.measurement.name == measurement and r.time == T0 + timedelta(minutes=minute)


def test_a_clean_run_under_report_by_exception_has_no_violation(tmp_path: Path) -> None:
    run = record(tmp_path)
    assert produced(run) == []
    assert run.figures["produced_polls"] == MINUTES
    assert run.figures["produced_suppressed"] > MINUTES  # most series of most polls
    assert run.figures["accepted_device_readings"] < MINUTES  # far fewer than 2 a poll


def test_a_change_beyond_the_deadband_not_written_is_caught(tmp_path: Path) -> None:
    found = produced(record(tmp_path, drop=at(30, "indoor")))  # the jump of 0.5 °C
    assert found
    first = str(found[0])
    assert "2026-12-01 10:30:01" in first
    assert f"indoor: temperature_c={temperature(30)} (last 22.25," in first  # written at 25
    assert f"deadband {BAND})" in first
    # the polls after it, compared with the last value accepted (before the jump), too
    assert all("indoor: temperature_c=" in str(v) for v in found)


def test_a_state_change_not_written_is_caught_though_the_poll_wrote_another_series(
    tmp_path: Path,
) -> None:
    """Minute 20: the fire input rose; the temperature line of that poll was written (a
    stamp of the poll is there), the alert's was not."""
    run = record(tmp_path, drop=at(20, "alert"))
    assert any(
        e.time_ns == int((T0 + timedelta(minutes=20)).timestamp()) * S
        for e in run.accepted.entries("indoor")
    ), "the poll's other series was written"
    found = produced(run)
    assert found
    assert "2026-12-01 10:20:01" in str(found[0])
    assert "alert,kind=fire_alarm: active=True (last False" in str(found[0])
    assert all("indoor" not in str(v) for v in found)


def test_a_missed_heartbeat_is_caught(tmp_path: Path) -> None:
    """Unchanged from minute 40: the heartbeat writes it at 55; dropping that line leaves
    the series' last accepted value (minute 40) older than a heartbeat and the poll span
    (30 s: how late a poll's answer may come after its stamp) from minute 56 on."""
    run = record(tmp_path, drop=at(55, "indoor"))
    found = produced(run)
    assert found, "the missed heartbeat"
    assert all("past the heartbeat" in str(v) for v in found)
    assert "2026-12-01 10:56:01" in str(found[0])
    assert "last accepted 961 s before" in str(found[0])


def test_a_poll_cut_by_a_fault_is_excused(tmp_path: Path) -> None:
    """The jump at minute 30 came in a poll a fault cut: not accepted, excused; the gateway
    writes it with the next poll."""
    run = record(tmp_path, excused=30)
    assert produced(run) == []
    assert run.figures["produced_lost_excused"] == 1


def test_without_report_by_exception_every_poll_needs_its_reading(tmp_path: Path) -> None:
    """heartbeat 0 (the old rule, or a gateway with report by exception off): a suppressed
    poll is a lost one."""
    run = record(tmp_path)
    run.heartbeat = 0
    found = produced(run)
    assert found
    assert all("became no accepted reading" in str(v) for v in found)


def counter_run(tmp_path: Path, produced: int) -> Run:
    """The gateway's clock stepped back 5 minutes: it wrote exited=306 at 10:46:41.8, then,
    reliving the minutes, exited=307 at 10:46:41.3 (committed later, stamped earlier). A
    poll at 11:00 answers ``produced`` and is not written."""
    outbox = Outbox(tmp_path / "outbox.db")
    for seconds, exited in ((41.8, 306), (41.3, 307)):
        outbox.append(
            [
                Reading(
                    branch="b",
                    device="counter",
                    measurement=schema.OCCUPANCY,
                    fields={"entered": 302, "exited": exited},
                    time=T0 + timedelta(minutes=46, seconds=seconds),
                )
            ]
        )
    entries = list(outbox.lines())
    outbox.close()
    stamp = int((T0 + timedelta(minutes=60)).timestamp()) * S
    values = (("occupancy", (), "entered", 302), ("occupancy", (), "exited", produced))
    return Run(
        accepted=ListAccepted(entries),
        answered=[Answered("counter", stamp + S, "", 0, values)],
        heartbeat=int(HEARTBEAT * S),
    )


def test_after_a_step_back_the_last_accepted_value_is_the_last_committed(
    tmp_path: Path,
) -> None:
    assert produced(counter_run(tmp_path / "a", 307)) == []
    found = produced(counter_run(tmp_path / "b", 306))
    assert len(found) == 1
    assert "occupancy: exited=306 (last 307, deadband 0)" in str(found[0])


def test_polls_of_two_groups_in_quick_succession_are_judged_field_by_field(
    tmp_path: Path,
) -> None:
    """A meter's default group (power) polled, its reading suppressed; its energy group
    (register) a minute later, written: the two polls' answers read as one poll (their
    places in the plan grow), and each field is judged on its own."""
    outbox = Outbox(tmp_path / "outbox.db")

    def energy(minute: float, **fields: float) -> Reading:
        return Reading(
            branch="b",
            device="meter",
            measurement=schema.ENERGY,
            fields=fields,
            tags={"carrier": "electricity"},
            time=T0 + timedelta(minutes=minute),
        )

    outbox.append([energy(0, power_w=2000.0, register=100.0, total=100.0)])
    outbox.append([energy(10, register=100.5, total=100.5)])
    entries = list(outbox.lines())
    outbox.close()
    tags = (("carrier", "electricity"),)
    at = int((T0 + timedelta(minutes=9)).timestamp()) * S
    answered = [
        Answered("meter", at + S, "", 0, (("energy", tags, "power_w", 2100.0),)),
        Answered("meter", at + 61 * S, "", 1, (("energy", tags, "register", 100.5),)),
    ]
    run = Run(
        accepted=ListAccepted(entries),
        answered=answered,
        heartbeat=int(HEARTBEAT * S),
        deadbands={("meter", "energy", "power_w"): 500.0},
    )
    assert produced(run) == []
    assert run.figures["produced_polls"] == 1  # the two polls read as one
    run.deadbands = {}  # without its deadband, the power's move had to be written
    found = produced(run)
    assert len(found) == 1
    assert "energy,carrier=electricity: power_w=2100.0 (last 2000.0, deadband 0)" in str(found[0])


def committed(tmp_path: Path, name: str, values: list[tuple[timedelta, float]]) -> list[Entry]:
    """The outbox's entries after committing one indoor field of "climate", one reading each
    (offset from T0, value), in the order given (the commit order)."""
    outbox = Outbox(tmp_path / "outbox.db")
    for at, value in values:
        outbox.append(
            [
                Reading(
                    branch="b",
                    device="climate",
                    measurement=schema.INDOOR,
                    fields={name: value},
                    time=T0 + at,
                )
            ]
        )
    entries = list(outbox.lines())
    outbox.close()
    return entries


def test_in_minutes_lived_twice_a_suppression_is_judged_against_either_pass(
    tmp_path: Path,
) -> None:
    """The clock stepped back 5 minutes at 10:50 (to 10:45): a poll at 10:45:42 of the first
    pass was not written, its value within the deadband of the first pass's last (21.0 at
    10:32); the second pass, committed later, wrote 22.0 at 10:45:39. Which pass a poll was
    in is not in the record, so either pass's values may explain it; a value neither
    explains is still caught."""
    entries = committed(
        tmp_path,
        "temperature_c",
        [
            (timedelta(minutes=m, seconds=sec), t)
            for m, sec, t in ((32, 40, 21.0), (48, 39, 22.0), (45, 39, 22.0))
        ],
    )
    step = int((T0 + timedelta(minutes=45, seconds=1)).timestamp()) * S

    def run(produced_temp: float, steps: list[tuple[int, int]]) -> Run:
        at = int((T0 + timedelta(minutes=45, seconds=42)).timestamp()) * S
        values = (("indoor", (), "temperature_c", produced_temp),)
        return Run(
            accepted=ListAccepted(entries),
            answered=[Answered("climate", at, "", 0, values)],
            heartbeat=int(HEARTBEAT * S),
            deadbands={("climate", "indoor", "temperature_c"): BAND},
            steps=steps,
        )

    stepped = [(step, -300 * S)]
    assert produced(run(21.1, stepped)) == []
    assert produced(run(21.1, [])), "without the step, 22.0 (committed last) is the last"
    found = produced(run(23.0, stepped))
    assert len(found) == 1
    assert "indoor: temperature_c=23.0 (last 22.0, deadband 0.2)" in str(found[0])


def test_a_value_suppressed_against_a_value_written_inside_its_polls_window_is_right(
    tmp_path: Path,
) -> None:
    """Found by the 30-day soak (1000x, a poll may be stamped 2,000 s of gateway time before
    its answer): co2 570 was answered 0.5 s before the next poll's entry of 546 was stamped;
    the gateway had compared 570 with the 582 it wrote 7 minutes before (within the deadband
    of 20), not with 546. A value beyond the deadband of every value it may have been
    compared with is still caught."""
    entries = committed(
        tmp_path,
        "co2_ppm",
        [
            (timedelta(minutes=52, seconds=45), 620.0),
            (timedelta(minutes=60, seconds=45), 582.0),
            (timedelta(minutes=68, seconds=10.156), 546.0),
        ],
    )

    def run(answered_co2: float) -> Run:
        at = int((T0 + timedelta(minutes=68, seconds=9.607)).timestamp() * S)
        later = int((T0 + timedelta(minutes=68, seconds=13.964)).timestamp() * S)
        return Run(
            accepted=ListAccepted(entries),
            answered=[
                Answered("climate", at, "", 0, (("indoor", (), "co2_ppm", answered_co2),)),
                Answered("climate", later, "", 0, (("indoor", (), "co2_ppm", 546.0),)),
            ],
            heartbeat=int(HEARTBEAT * S),
            deadbands={("climate", "indoor", "co2_ppm"): 20.0},
            poll_span=2_000 * S,
        )

    assert produced(run(570.0)) == []
    found = produced(run(645.0))  # 25 from 620, more from the others
    assert len(found) == 1
    assert "co2_ppm=645.0 (last 546.0, deadband 20)" in found[0].reason
