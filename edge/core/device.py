"""What the gateway needs from a device, whatever its protocol.

An integration builds a ``DeviceSource`` from a device's config; the gateway's ``Coordinator``
polls it on schedule. The source does protocol I/O and decoding; it never schedules itself.

Exceptions (catch at the level you need)::

    DeviceError            a device-level failure
    ├── DeviceUnreachable  no answer at all: connection refused, timed out, bus or broker down
    └── NotConfirmed       a command went out, but the device did not report the commanded
                           value in time (an MQTT actuator's state message never came)

A command the device must never get (unknown point, out of range, expired) raises
``edge.core.command.CommandError`` instead, a ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from openbranch.edge.core.command import Command
from openbranch.edge.core.reading import Reading, Value

__all__ = [
    "Accept",
    "Deadbands",
    "DeviceError",
    "DeviceSource",
    "DeviceUnreachable",
    "NotConfirmed",
    "PointInfo",
    "PointReader",
    "PollResult",
    "Reject",
    "Rollovers",
    "Series",
    "SimulatedDevice",
    "Simulation",
    "agrees",
    "deadbands_of",
    "rollovers_of",
]


class DeviceError(Exception):
    """A device-level failure. Base of the hierarchy below."""


class DeviceUnreachable(DeviceError):
    """No answer at all: connection refused, timed out, or the bus is down."""


class NotConfirmed(DeviceError):
    """The command was sent, but the device did not report the commanded value in time.

    Raised by a device whose only feedback is what it reports on its own (an MQTT actuator
    waits for its next state message): the device may have moved, or may not; the caller
    treats it as a write that did not take and tries again.
    """


def agrees(reported: Value | None, wanted: Value) -> bool:
    """Whether the value a device reports is the value it was told to take: equal, or, for a
    number with a fraction, within half a unit (a DALI light set to 80 % reports 80.3)."""
    numbers = (
        isinstance(reported, int | float)
        and isinstance(wanted, int | float)
        and not isinstance(reported, bool)
        and not isinstance(wanted, bool)
    )
    if numbers and (isinstance(reported, float) or isinstance(wanted, float)):
        assert isinstance(reported, int | float)
        return abs(float(reported) - float(wanted)) < 0.5
    return reported == wanted


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll brought.

    ``reached`` is true when the device answered at least one request (a Modbus exception
    response is an answer: the device is alive, a block of it is not). ``failures`` holds one
    line per failed request; ``missing`` names points that gave no value, with the reason.
    """

    readings: tuple[Reading, ...] = ()
    reached: bool = True
    failures: tuple[str, ...] = ()
    missing: Mapping[str, str] = field(default_factory=dict)


Accept = Callable[[Sequence[Reading]], None]
Reject = Callable[[str, str], None]


class DeviceSource(Protocol):
    @property
    def device_id(self) -> str: ...

    def intervals(self) -> Mapping[str, float]:
        """Poll interval in seconds per point group."""
        ...

    def describe_plan(self) -> str:
        """One line for the log and `gateway check`: 'main-meter: 2 requests, 76 registers'."""
        ...

    async def poll(self, groups: Collection[str]) -> PollResult:
        """Read the points of ``groups`` (polled devices; push devices return PollResult())."""
        ...

    async def listen(self, accept: Accept, reject: Reject) -> None:
        """For devices that push (MQTT): deliver readings as they arrive until cancelled.

        ``accept`` takes readings; ``reject(where, reason)`` counts and logs a message that
        did not become a reading (``where`` names the topic). Polled devices return at once.
        """
        ...

    async def write(self, command: Command) -> Value:
        """Carry out ``command`` and return the value read back from the device."""
        ...

    async def close(self) -> None: ...


Series = tuple[str, str]
"""(measurement, field): a value a device reports, as ``Coordinator.last`` keys it."""


@runtime_checkable
class Rollovers(Protocol):
    """A ``DeviceSource`` that knows how wide the registers behind its values are.

    Optional: a source without it (an MQTT device, whose payloads carry plain numbers) has no
    known rollover, and every large drop of its counters is a reset.
    """

    def rollovers(self) -> Mapping[Series, float]:
        """Per (measurement, field), the value at which the reading wraps to 0 when the raw
        register behind it overflows (``2**16 * scale`` for a scaled uint16, ``2**32 * scale``
        for a uint32). Only values with a known width are in it (floats are not). It matters
        for counters, such as ``energy.register``; a consumer picks the fields it counts."""
        ...


def rollovers_of(source: object) -> Mapping[Series, float]:
    """``source.rollovers()``, or nothing for a source that does not know its widths."""
    return source.rollovers() if isinstance(source, Rollovers) else {}


@runtime_checkable
class Deadbands(Protocol):
    """A ``DeviceSource`` whose profile declares deadbands (report by exception).

    Optional: a source without it has none, and any change of its values is written."""

    def deadbands(self) -> Mapping[Series, float]:
        """Per (measurement, field), how far a number may move from its last written value
        and still not be written. Fields without one are left out."""
        ...


def deadbands_of(source: object) -> Mapping[Series, float]:
    """``source.deadbands()``, or nothing for a source without deadbands."""
    return source.deadbands() if isinstance(source, Deadbands) else {}


@runtime_checkable
class PointReader(Protocol):
    """A ``DeviceSource`` that can tell the current value of one of its points on demand, so
    the reconciler can re-verify an actuator it set long ago (a lock opened by hand).

    Optional: a source without it is trusted after its write was confirmed.
    """

    async def read_point(self, point: str) -> Value:
        """The value of ``point`` now, in its field's type (as ``write`` returns it): read
        from the device (Modbus), or the value the device last reported (MQTT, whose devices
        report every change). Raises ``DeviceError`` when there is no value to be had and
        ``CommandError`` for a point the device does not have."""
        ...


@dataclass(frozen=True, slots=True)
class PointInfo:
    """A point of a simulated device and its meaning, so a scenario can drive it by meaning."""

    id: str
    measurement: str | None
    field: str | None
    tags: Mapping[str, str]
    writable: bool


class SimulatedDevice(Protocol):
    """A device that a simulation serves over its real protocol, driven by a scenario."""

    @property
    def device_id(self) -> str: ...

    def points(self) -> tuple[PointInfo, ...]: ...

    def set(self, point_id: str, value: Value) -> None:
        """Set the value the device reports for ``point_id``."""
        ...

    def get(self, point_id: str) -> Value | None:
        """The value the device holds (after writes from the gateway, too)."""
        ...

    def set_silent(self, silent: bool) -> None:
        """Stop (or resume) answering requests at all."""
        ...


class Simulation(Protocol):
    """Simulated devices for a set of device configs, served on their configured addresses."""

    @property
    def devices(self) -> Mapping[str, SimulatedDevice]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
