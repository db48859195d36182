"""The branch engine: for any instant, the branch's mode, the closing sequence, and the desired
state of every actuator class — with the alerts a person must see.

Rules, in order of precedence:
1. A fire alarm puts the branch in ``emergency`` (stop admitting, lights full on, never arm)
   and it stays there until a person clears it, even when the input goes quiet.
2. Open hours (staffed, self-service) follow the calendar; at the occupancy cap the doors go
   exit-only until the count drops below it.
3. From open to closed, the closing sequence: stop admitting (exit-only), PCs off, wait until
   the people counter says zero; then, after ``lights_off_after_empty`` minutes, lights off,
   lock — and only then arm. A branch not empty after the grace period raises one alert,
   keeps announcing, keeps egress free, and arms as soon as it is empty. A people counter that
   does not answer counts as "not known to be empty": the alarm is never armed on a guess.
4. After a restart in closed hours the sequence starts again from "verify empty" — the safe
   side. Announcements are made only inside their minute; a missed one is never replayed late.

Time that jumps (the wall clock stepped by NTP or a person; decision 48). Each ``step`` gets the
wall-clock ``now`` and, from the gateway, the clock's ``monotonic`` reading:

- The engine decides at an *instant* that never goes back. A step back of at most
  ``HOLD_BACK_MAX`` (two hours: an RTC kept in local time and read as UTC is one or two hours
  off in Europe) is held: the engine decides at the latest instant it has decided at until
  the wall clock passes it again, so no mode change is undone and made again (closed at 22:00,
  the clock goes back from 22:01 to 21:59: the branch stays closed and nothing is announced
  again), and no announcement is repeated. A step back of more than that is a new time: the
  engine decides at it, and a change of mode it makes is made (and audited) once.
- Durations (the grace period, the lights-off delay after "verified empty", the calls to
  leave) run on the monotonic clock, so a step neither shortens nor stretches them. Without a
  monotonic reading (the tables in the tests, tools) they run on the decision instant.
- A step forward skips nothing of the closing sequence: the first step past the closing time
  starts it (stop admitting, wait until the counter says empty), and the alarm is armed only
  once the counter says zero and the lights-off delay has run in monotonic time — a jump over
  22:00, or a jump while the branch is "verified empty", arms nothing early. An announcement
  whose minute passed entirely between two steps is not played late (the people in the branch
  would hear "closes in 15 minutes" after closing): it is noted as skipped in the audit, and
  the closing sequence's own calls to leave follow the grace period as usual.

Pure: time and inputs come in with each ``step``; the engine reads no clock and moves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from openbranch.edge.core.schedule import ClosingPolicy, Mode
from openbranch.edge.hours.calendar import Calendar, Override
from openbranch.edge.hours.policy import DESIRED, DesiredState

__all__ = [
    "HOLD_BACK_MAX",
    "AlertEvent",
    "BranchEngine",
    "Decision",
    "Inputs",
    "Occupancy",
    "Phase",
]

_OPEN = (Mode.STAFFED, Mode.SELF_SERVICE)
LEAVE_CALL_EVERY = timedelta(minutes=5)  # how often a straggler hears "please leave"
HOLD_BACK_MAX = timedelta(hours=2)  # a step back up to this is held; a larger one is a new time
MISSED_SCAN = timedelta(days=1)  # how far back skipped announcements are itemised


class Phase(StrEnum):
    OPEN = "open"
    CLOSING = "closing"  # stop admitting, waiting for the branch to be empty
    EMPTY = "empty"  # verified empty; lights go off after the delay
    SECURED = "secured"  # locked and armed
    EMERGENCY = "emergency"


@dataclass(frozen=True, slots=True)
class Inputs:
    present: int | None  # people in the building; None when the counter is unavailable
    fire_alarm: bool = False


@dataclass(frozen=True, slots=True)
class AlertEvent:
    kind: str
    message: str
    severity: str  # info | warning | critical
    active: bool


@dataclass(frozen=True, slots=True)
class Decision:
    at: datetime
    mode: Mode
    phase: Phase
    desired: DesiredState
    alerts: tuple[AlertEvent, ...] = ()
    announcements: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # audit: what the engine decided and why


def _older(total: int, last: int) -> bool:
    """A total a little below the last one is an older reading (a QoS 1 message the broker sent
    again after a restart), not the counter's own reset: a reset goes back near zero (at most a
    tenth of the last total, or 10). Taken as a reset, it would move the baseline by the whole
    total and read a full branch as empty."""
    return max(10, last // 10) < total < last


class Occupancy:
    """People present from a counter's running totals: entered - exited - baseline, >= 0.

    ``net`` is the unclamped balance of this counter: with several entrances, people enter by
    one door and leave by another, so the branch's count is the clamped sum of the nets.
    ``reset`` makes the current count zero: the daily correction once the branch is closed
    and verified empty (counters drift: a person counted in but not out).

    A total that drops to near zero is the counter's own reset: the people counted before it
    are still in the balance. A total a little below the last is an older reading and is not
    taken (the plausibility filter lets a drop through as a reset once enough time has passed
    for a door to count it again, and compares nothing with the first value after a restart).
    A negative total is never taken.
    """

    def __init__(self) -> None:
        self._entered = self._exited = 0
        self._baseline = 0
        self.known = False

    def update(self, entered: int, exited: int) -> int:
        if entered < 0 or exited < 0:
            return self.present
        if self.known and (_older(entered, self._entered) or _older(exited, self._exited)):
            return self.present  # an older reading (a message sent again): nothing new
        if self.known and entered < self._entered:
            self._baseline -= self._entered  # the counter restarted: keep who it counted in
        if self.known and exited < self._exited:
            self._baseline += self._exited
        self._entered, self._exited, self.known = entered, exited, True
        return self.present

    @property
    def net(self) -> int:
        return self._entered - self._exited - self._baseline

    @property
    def present(self) -> int:
        return max(0, self.net)

    def reset(self) -> None:
        self._baseline = self._entered - self._exited

    @property
    def state(self) -> tuple[int, int, int]:
        """What a restart needs: the last totals and the baseline (entered, exited, baseline)."""
        return (self._entered, self._exited, self._baseline)

    @classmethod
    def restored(cls, entered: int, exited: int, baseline: int) -> Occupancy:
        """A counter as the last run left it: its totals are known before it answers again."""
        occupancy = cls()
        occupancy._entered, occupancy._exited, occupancy._baseline = entered, exited, baseline
        occupancy.known = True
        return occupancy


@dataclass(slots=True)
class _State:
    phase: Phase = Phase.OPEN
    since: datetime | None = None  # when the current phase began (steady time)
    emergency: bool = False
    straggler_alert: bool = False
    cap_alert: bool = False
    counter_alert: bool = False
    announced: set[str] = field(default_factory=set)
    last_leave_call: datetime | None = None  # steady time


@dataclass(slots=True)
class _Time:
    """The engine's two times: the instant it decides at (wall clock, never back) and the
    steady time its durations are measured in (moved by the monotonic clock)."""

    instant: datetime | None = None  # the latest instant decided at
    steady: datetime | None = None
    monotonic: float | None = None  # the monotonic reading at the last step
    holding: bool = False  # the wall clock is behind ``instant`` (a step back being held)


class BranchEngine:
    def __init__(self, *, calendar: Calendar, policy: ClosingPolicy) -> None:
        self.calendar = calendar
        self.policy = policy
        self._s = _State(phase=Phase.CLOSING)  # after a start: verify before trusting
        self._started = False
        self._t = _Time()

    @property
    def phase(self) -> Phase:
        return self._s.phase

    @property
    def emergency(self) -> bool:
        """In emergency mode (latched until a person clears it)."""
        return self._s.emergency

    def restore_emergency(self, since: datetime) -> None:
        """An emergency that was not cleared before the gateway restarted: it goes on."""
        self._s.emergency = True
        self._s.phase = Phase.EMERGENCY
        self._s.since = since

    def clear_emergency(self, who: str) -> str:
        """A person clears the emergency; the branch returns to its calendar mode."""
        self._s.emergency = False
        self._s.phase = Phase.CLOSING
        self._s.since = None
        return f"emergency cleared by {who}"

    def step(
        self,
        now: datetime,
        inputs: Inputs,
        overrides: Sequence[Override] = (),
        *,
        monotonic: float | None = None,
    ) -> Decision:
        """Decide at ``now`` (the wall clock); ``monotonic``: the clock's monotonic reading in
        seconds, for durations that a step of the wall clock must not change."""
        notes: list[str] = []
        previous = self._t.instant
        now, steady = self._advance(now, monotonic, notes)
        resolution = self.calendar.mode_at(now, overrides)
        alerts: list[AlertEvent] = []
        if not self._started:
            self._started = True
            self._s.phase = Phase.OPEN if resolution.mode in _OPEN else Phase.CLOSING
            self._s.since = steady
            notes.append(f"started in {resolution.mode} ({resolution.reason})")
        elif previous is not None and not self._s.emergency:
            notes += self._skipped(previous, now, overrides)
        if inputs.fire_alarm and not self._s.emergency:
            self._s.emergency = True
            self._s.phase = Phase.EMERGENCY
            alerts.append(AlertEvent("fire", "fire alarm: emergency mode", "critical", True))
            notes.append("fire alarm input: emergency until a person clears it")
        if self._s.emergency:
            return Decision(
                now,
                Mode.EMERGENCY,
                Phase.EMERGENCY,
                DESIRED[Mode.EMERGENCY],
                tuple(alerts),
                (),
                tuple(notes),
            )
        if resolution.mode in _OPEN or resolution.mode is Mode.MAINTENANCE:
            return self._open(
                now,
                steady,
                resolution.mode,
                inputs=inputs,
                alerts=alerts,
                notes=notes,
                overrides=overrides,
            )
        return self._closing(now, steady, inputs, alerts, notes)

    def _advance(
        self, now: datetime, monotonic: float | None, notes: list[str]
    ) -> tuple[datetime, datetime]:
        """The instant to decide at and the steady time of this step (see the module doc)."""
        t = self._t
        instant = now
        if t.instant is not None and now < t.instant:
            back = t.instant - now
            if back <= HOLD_BACK_MAX:
                instant = t.instant
                if not t.holding:
                    notes.append(
                        f"clock went back {back} to {now.isoformat()}: deciding at "
                        f"{instant.isoformat()} until the clock passes it"
                    )
                t.holding = True
            else:
                t.holding = False
                notes.append(
                    f"clock went back {back} to {now.isoformat()}, more than {HOLD_BACK_MAX}: "
                    "deciding at the new time"
                )
        else:
            t.holding = False
        elapsed = None
        if monotonic is not None and t.monotonic is not None:
            elapsed = timedelta(seconds=max(0.0, monotonic - t.monotonic))
            if t.instant is not None and now - t.instant - elapsed > timedelta(minutes=1):
                notes.append(f"clock jumped {now - t.instant - elapsed} forward")
        if t.steady is None:
            steady = instant
        elif elapsed is not None:
            steady = t.steady + elapsed
        else:
            steady = max(t.steady, instant)
        t.instant, t.steady, t.monotonic = instant, steady, monotonic
        return instant, steady

    def _skipped(
        self, previous: datetime, now: datetime, overrides: Sequence[Override]
    ) -> list[str]:
        """Announcements whose minute passed entirely between the previous step and this one
        (the clock jumped forward, or a step came late): noted as skipped, never played."""
        if now - previous <= timedelta(minutes=1):
            return []  # every minute between the two steps held one of them
        notes = []
        upcoming = self.calendar.transitions(
            max(previous, now - MISSED_SCAN),
            now + timedelta(minutes=max(self.policy.announce_before, default=0) + 1),
            overrides,
        )
        for t in upcoming:
            if t.mode_to is not Mode.CLOSED or t.mode_from not in _OPEN:
                continue
            for minutes in self.policy.announce_before:
                due = t.at - timedelta(minutes=minutes)
                key = f"{t.at.isoformat()}-{minutes}"
                passed = previous < due and due + timedelta(minutes=1) <= now
                if passed and key not in self._s.announced:
                    self._s.announced.add(key)
                    notes.append(
                        f"announcement skipped, not played late: closing in {minutes} "
                        f"minutes was due at {due.astimezone(self.calendar.tz):%H:%M} "
                        f"(no step between {previous.isoformat()} and {now.isoformat()})"
                    )
        return notes

    def _open(
        self,
        now: datetime,
        steady: datetime,
        mode: Mode,
        *,
        inputs: Inputs,
        alerts: list[AlertEvent],
        notes: list[str],
        overrides: Sequence[Override] = (),
    ) -> Decision:
        if self._s.phase is not Phase.OPEN:
            notes.append(f"open: {mode}")
            self._s.phase, self._s.since = Phase.OPEN, steady
            self._s.announced.clear()
            if self._s.straggler_alert:
                self._s.straggler_alert = False
                alerts.append(AlertEvent("not_empty", "branch opened again", "warning", False))
        desired = DESIRED[mode]
        if self._clearing_out(now, mode, overrides):
            desired = replace(desired, door="exit_only")
        cap = self.policy.occupancy_cap
        over = cap is not None and inputs.present is not None and inputs.present >= cap
        if over != self._s.cap_alert:
            self._s.cap_alert = over
            alerts.append(
                AlertEvent(
                    "occupancy_cap",
                    f"{inputs.present} present, cap {cap}: doors exit-only"
                    if over
                    else "below the cap",
                    "warning",
                    over,
                )
            )
        if over:
            desired = replace(desired, door="exit_only")
        announce = self._announce(now, overrides)
        return Decision(now, mode, Phase.OPEN, desired, tuple(alerts), announce, tuple(notes))

    def _clearing_out(self, now: datetime, mode: Mode, overrides: Sequence[Override]) -> bool:
        """In the clear-out gap after staffed hours hand over to self-service: exit only."""
        gap = timedelta(minutes=self.policy.clear_out_gap)
        if mode is not Mode.SELF_SERVICE or not gap:
            return False
        before = now - gap + timedelta(microseconds=1)
        return self.calendar.mode_at(before, overrides).mode is Mode.STAFFED

    def _announce(self, now: datetime, overrides: Sequence[Override]) -> tuple[str, ...]:
        """Closing announcements due in this minute (never replayed after it), for the closing
        the overrides in force make, not only the calendar's: an override that closes at
        15:00 is announced before 15:00, and one that keeps the branch open past its hours
        silences the calendar's announcement."""
        upcoming = self.calendar.transitions(
            now,
            now + timedelta(minutes=max(self.policy.announce_before, default=0) + 1),
            overrides,
        )
        out = []
        for t in upcoming:
            if t.mode_to is not Mode.CLOSED or t.mode_from not in _OPEN:
                continue
            for minutes in self.policy.announce_before:
                due = t.at - timedelta(minutes=minutes)
                key = f"{t.at.isoformat()}-{minutes}"
                if due <= now < due + timedelta(minutes=1) and key not in self._s.announced:
                    self._s.announced.add(key)
                    out.append(f"The library closes in {minutes} minutes.")
        return tuple(out)

    def _straggler(
        self, steady: datetime, inputs: Inputs, alerts: list[AlertEvent]
    ) -> tuple[str, ...]:
        """Not empty after the grace period: one alert, and a call to leave every 5 min."""
        s = self._s
        if not s.straggler_alert:
            s.straggler_alert = True
            who = "unknown" if inputs.present is None else str(inputs.present)
            alerts.append(
                AlertEvent(
                    "not_empty",
                    f"{who} still present {self.policy.grace} min after closing",
                    "warning",
                    True,
                )
            )
        if s.last_leave_call is None or steady - s.last_leave_call >= LEAVE_CALL_EVERY:
            s.last_leave_call = steady
            return ("The library is closed. Please leave by the nearest exit.",)
        return ()

    def _closing(
        self,
        now: datetime,
        steady: datetime,
        inputs: Inputs,
        alerts: list[AlertEvent],
        notes: list[str],
    ) -> Decision:
        s = self._s
        if s.phase is Phase.OPEN:
            s.phase, s.since = Phase.CLOSING, steady
            notes.append("closed: stop admitting, waiting until empty")
        since = s.since or steady
        empty = inputs.present == 0
        if (inputs.present is None) != s.counter_alert:
            s.counter_alert = inputs.present is None
            alerts.append(
                AlertEvent(
                    "counter_unavailable",
                    "people counter not answering: the alarm stays disarmed",
                    "warning",
                    s.counter_alert,
                )
            )
        announcements: tuple[str, ...] = ()
        if s.phase in (Phase.EMPTY, Phase.SECURED) and not empty:
            s.phase, s.since = Phase.CLOSING, steady
            who = (
                "the people counter not answering"
                if inputs.present is None
                else f"{inputs.present} present"
            )
            notes.append(f"{who} after closing: disarm and wait")
        if s.phase is Phase.CLOSING:
            if empty:
                s.phase, s.since = Phase.EMPTY, steady
                notes.append("verified empty")
                if s.straggler_alert:
                    s.straggler_alert = False
                    alerts.append(AlertEvent("not_empty", "branch is empty now", "warning", False))
            elif steady - since >= timedelta(minutes=self.policy.grace):
                announcements = self._straggler(steady, inputs, alerts)
        if s.phase is Phase.EMPTY and steady - (s.since or steady) >= timedelta(
            minutes=self.policy.lights_off_after_empty
        ):
            s.phase, s.since = Phase.SECURED, steady
            notes.append("lights off, locked, alarm armed")
        closed = DESIRED[Mode.CLOSED]
        if s.phase is Phase.CLOSING:
            desired = replace(
                closed, door="exit_only", lights="on", light_level=100.0, alarm="disarmed"
            )
        elif s.phase is Phase.EMPTY:
            desired = replace(
                closed, lights="on", light_level=30.0, door="exit_only", alarm="disarmed"
            )
        else:
            desired = closed
        return Decision(
            now, Mode.CLOSED, s.phase, desired, tuple(alerts), announcements, tuple(notes)
        )
