"""The reconciler: make the devices match the desired state, verify, retry, alert.

Each actuator of the config maps one desired-state class (door, lights, hvac, pcs, alarm) to
one device point. The reconciler sends a ``Command`` when the desired value differs from what
the device last confirmed (read back after the write), or when nothing is confirmed yet — so
after a restart or a power cut every actuator is asserted again. A write that fails, or reads
back something else, is retried; after ``retries`` it raises an alert and keeps trying on each
pass. Commands expire: a stale one is never carried out late.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from openbranch.edge.core.command import Command
from openbranch.edge.core.device import DeviceError, DeviceSource
from openbranch.edge.core.reading import Value
from openbranch.edge.core.schedule import Actuator
from openbranch.edge.hours.policy import DesiredState

__all__ = ["Reconciler", "desired_value"]

log = logging.getLogger(__name__)


def desired_value(actuator: Actuator, desired: DesiredState) -> Value | None:
    state: str = {
        "door": desired.door,
        "lights": desired.lights,
        "hvac": desired.hvac,
        "pcs": desired.pcs,
        "alarm": desired.alarm,
    }[actuator.kind]
    if actuator.values is None:
        if actuator.kind == "lights":
            return float(desired.light_level if desired.lights == "on" else 0.0)
        return None
    return actuator.values.get(state)


@dataclass(slots=True)
class _Track:
    confirmed: Value | None = None
    failures: int = 0
    alerting: bool = False


Alert = Callable[[str, str, bool], None]  # kind, message, active
Audit = Callable[[str], None]


class Reconciler:
    def __init__(
        self,
        *,
        actuators: Sequence[Actuator],
        sources: Mapping[str, DeviceSource],
        on_alert: Alert,
        on_audit: Audit,
        retries: int = 2,
        ttl: timedelta = timedelta(minutes=1),
    ) -> None:
        self.actuators = list(actuators)
        self._sources = sources
        self._alert = on_alert
        self._audit = on_audit
        self._retries = retries
        self._ttl = ttl
        self._tracks = {(a.device, a.point): _Track() for a in self.actuators}

    async def reconcile(self, now: datetime, desired: DesiredState, reason: str) -> int:
        """One pass over every actuator; returns how many commands it sent."""
        sent = 0
        for actuator in self.actuators:
            want = desired_value(actuator, desired)
            track = self._tracks[(actuator.device, actuator.point)]
            if want is None or (track.confirmed == want and not track.alerting):
                continue
            sent += 1
            await self._send(now, actuator, want, track, reason)
        return sent

    async def _send(
        self, now: datetime, actuator: Actuator, want: Value, track: _Track, reason: str
    ) -> None:
        where = f"{actuator.device}.{actuator.point}"
        source = self._sources.get(actuator.device)
        command = Command(
            device=actuator.device,
            point=actuator.point,
            value=want,
            reason=reason,
            who="engine",
            issued_at=now,
            expires_at=now + self._ttl,
        )
        try:
            if source is None:
                raise DeviceError(f"no device {actuator.device!r} in the config")
            back = await source.write(command)
        except (DeviceError, ValueError) as exc:
            back, problem = None, str(exc)
        else:
            problem = "" if _same(back, want) else f"reads back {back!r}"
        if not problem:
            track.confirmed, track.failures = want, 0
            self._audit(f"{where} := {want!r} ({reason})")
            if track.alerting:
                track.alerting = False
                self._alert(f"actuator:{where}", f"{where} follows again", False)
            return
        track.confirmed = None
        track.failures += 1
        log.warning("%s: set %r failed: %s (attempt %d)", where, want, problem, track.failures)
        if track.failures > self._retries and not track.alerting:
            track.alerting = True
            self._alert(f"actuator:{where}", f"{where} does not follow {want!r}: {problem}", True)


def _same(a: Value | None, b: Value) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and not isinstance(a, str) and abs(float(a) - float(b)) < 0.5
    return a == b
