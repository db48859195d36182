"""What each mode means for the building, and the planned actions around a change of mode.

``DESIRED`` maps each mode to the desired state of every actuator class. ``ClosingPolicy``
holds the per-branch offsets: announcements before closing, PCs off before closing, lights
off after the branch is empty, an optional clear-out gap when staffed hours hand over to
self-service. ``planned_actions`` turns calendar transitions into the timed actions staff
review with ``openbranch schedule plan``.

The alarm is never armed by the clock: the closing sequence arms it only once the people
counter says the branch is empty. Nothing here can block egress: doors in ``locked`` mode
still open from the inside (mechanical, fail-safe exit hardware).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal

from openbranch.edge.core.schedule import ClosingPolicy, Mode
from openbranch.edge.hours.calendar import Transition

__all__ = ["DESIRED", "Action", "DesiredState", "planned_actions"]

DoorState = Literal["locked", "access_control", "free", "exit_only"]


@dataclass(frozen=True, slots=True)
class DesiredState:
    door: DoorState
    lights: Literal["on", "off"]
    light_level: float  # % when on
    hvac: Literal["comfort", "setback"]
    pcs: Literal["on", "off"]
    alarm: Literal["armed", "disarmed"]


DESIRED = MappingProxyType(
    {
        Mode.STAFFED: DesiredState("free", "on", 100.0, "comfort", "on", "disarmed"),
        Mode.SELF_SERVICE: DesiredState("access_control", "on", 80.0, "comfort", "on", "disarmed"),
        Mode.CLOSED: DesiredState("locked", "off", 0.0, "setback", "off", "armed"),
        Mode.MAINTENANCE: DesiredState("locked", "on", 100.0, "comfort", "off", "disarmed"),
        # Emergency: stop admitting, full light, never arm; exits open in hardware.
        Mode.EMERGENCY: DesiredState("exit_only", "on", 100.0, "setback", "off", "disarmed"),
    }
)


@dataclass(frozen=True, slots=True)
class Action:
    at: datetime
    what: str
    detail: str = ""


_OPEN = (Mode.STAFFED, Mode.SELF_SERVICE)


def planned_actions(transitions: Sequence[Transition], policy: ClosingPolicy) -> list[Action]:
    """The timed actions around each change of mode, in time order."""
    actions: list[Action] = []
    for t in transitions:
        desired = DESIRED[t.mode_to]
        if t.mode_from in _OPEN and t.mode_to is Mode.CLOSED:
            for minutes in sorted(policy.announce_before, reverse=True):
                actions.append(
                    Action(
                        t.at - timedelta(minutes=minutes), "announce", f"closing in {minutes} min"
                    )
                )
            if policy.pcs_off_before:
                actions.append(
                    Action(t.at - timedelta(minutes=policy.pcs_off_before), "pcs", "off")
                )
            actions.append(Action(t.at, "doors", "exit_only: stop admitting"))
            actions.append(
                Action(
                    t.at,
                    "closing sequence",
                    "wait until empty; then lights off, lock, arm the alarm",
                )
            )
            continue
        actions.append(Action(t.at, "alarm", desired.alarm))  # disarm before doors open
        if t.mode_from is Mode.STAFFED and t.mode_to is Mode.SELF_SERVICE and policy.clear_out_gap:
            actions.append(Action(t.at, "clear-out", f"{policy.clear_out_gap} min closed first"))
            actions.append(
                Action(t.at + timedelta(minutes=policy.clear_out_gap), "doors", desired.door)
            )
        else:
            actions.append(Action(t.at, "doors", desired.door))
        actions.append(Action(t.at, "lights", f"{desired.lights} {desired.light_level:g} %"))
        actions.append(Action(t.at, "hvac", desired.hvac))
        actions.append(Action(t.at, "pcs", desired.pcs))
    return sorted(actions, key=lambda a: a.at)
