"""The reconciler: make the devices match the desired state, verify, retry, alert.

Each actuator of the config maps one desired-state class (door, lights, hvac, pcs, alarm) to
one device point. The reconciler sends a ``Command`` when the desired value differs from what
the device last confirmed (read back after the write), or when nothing is confirmed yet — so
after a restart or a power cut every actuator is asserted again. A write that fails, or reads
back something else, is retried; after ``retries`` it raises an alert (``actuator:<device>.
<point>``) and keeps trying on each pass. Commands expire: a stale one is never carried out
late.

A confirmed actuator is re-verified every ``reverify`` of gateway time, when its source can
read a point (``edge.device.PointReader``: a Modbus read, an MQTT device's last report). A
device found away from the desired value has drifted (a lock opened by hand, a light switched
on after closing): the drift is audited, raises ``actuator_drift:<device>.<point>`` once, and
the value is re-asserted at once; the alert is cleared when the device follows again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from openbranch.edge.core.command import Command
from openbranch.edge.core.device import DeviceError, DeviceSource, PointReader, agrees
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
    verified: datetime | None = None  # when the device last showed ``confirmed``
    drifting: bool = False  # the drift alert is raised
    unread: bool = False  # the last re-verification could not read the point (logged once)


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
        reverify: timedelta | None = timedelta(minutes=1),
    ) -> None:
        """``reverify``: how long a confirmed actuator is trusted before it is read again
        (gateway time; None: never)."""
        self.actuators = list(actuators)
        self._sources = sources
        self._alert = on_alert
        self._audit = on_audit
        self._retries = retries
        self._ttl = ttl
        self._reverify = reverify
        self._tracks = {(a.device, a.point): _Track() for a in self.actuators}

    async def reconcile(self, now: datetime, desired: DesiredState, reason: str) -> int:
        """One pass over every actuator; returns how many commands it sent."""
        sent = 0
        for actuator in self.actuators:
            want = desired_value(actuator, desired)
            track = self._tracks[(actuator.device, actuator.point)]
            if want is None:
                continue
            why = reason
            if track.confirmed == want and not track.alerting:
                if await self._still_follows(now, actuator, want, track):
                    continue
                why = f"{reason}, re-asserted after drift"
            sent += 1
            await self._send(now, actuator, want, track, why)
        return sent

    async def _still_follows(
        self, now: datetime, actuator: Actuator, want: Value, track: _Track
    ) -> bool:
        """False when a due re-verification finds the device away from ``want`` (a drift,
        audited and alerted once); True when it agrees, is not due, or cannot be read."""
        if self._reverify is None or (
            track.verified is not None and abs(now - track.verified) < self._reverify
        ):  # abs: a clock stepped back does not postpone the check
            return True
        source: object = self._sources.get(actuator.device)
        if not isinstance(source, PointReader):
            return True
        where = f"{actuator.device}.{actuator.point}"
        try:
            value = await source.read_point(actuator.point)
        except (DeviceError, ValueError) as exc:
            (log.debug if track.unread else log.warning)("%s: not re-verified: %s", where, exc)
            track.verified, track.unread = now, True  # tried again after another interval
            return True
        track.verified, track.unread = now, False
        if agrees(value, want):
            return True
        self._audit(f"{where} drifted: reads {value!r}, want {want!r}")
        log.warning("%s drifted: reads %r, want %r; re-asserting", where, value, want)
        if not track.drifting:
            track.drifting = True
            self._alert(
                f"actuator_drift:{where}",
                f"{where} reads {value!r}, not {want!r}: set again",
                True,
            )
        track.confirmed = None
        return False

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
            problem = "" if agrees(back, want) else f"reads back {back!r}"
        if not problem:
            track.confirmed, track.failures, track.verified = want, 0, now
            self._audit(f"{where} := {want!r} ({reason})")
            if track.alerting:
                track.alerting = False
                self._alert(f"actuator:{where}", f"{where} follows again", False)
            if track.drifting:
                track.drifting = False
                self._alert(f"actuator_drift:{where}", f"{where} follows {want!r} again", False)
            return
        track.confirmed = None
        track.failures += 1
        log.warning("%s: set %r failed: %s (attempt %d)", where, want, problem, track.failures)
        if track.failures > self._retries and not track.alerting:
            track.alerting = True
            self._alert(f"actuator:{where}", f"{where} does not follow {want!r}: {problem}", True)
