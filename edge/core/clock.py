"""Time, injected. The gateway asks a clock for "now" and sleeps on it, so tests and the demo
can run a branch's day in seconds with the same code that runs it in real time.

A clock has two readings (decision 46):

- ``now()``: the wall clock, UTC. Stamps come from it (a reading's time, an audit entry's,
  the calendar's instant). It can jump: NTP steps a drifted clock forwards or backwards, an
  installer sets the date.
- ``monotonic()``: seconds of the clock's own time that never go back and never jump. Every
  schedule runs on it (when the next poll is due), and so does every duration that must not
  be shortened or stretched by a step (how long the branch has been empty).

``sleep(s)`` waits ``s`` seconds of ``monotonic()`` time. ``clock_offset(clock)`` is the wall
clock minus the monotonic clock: constant while nothing steps, so a change in it between two
moments is a clock step of that size (the energy ledger uses it to tell a step from a gap).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ScaledClock", "SystemClock", "clock_offset", "honour_cancel"]


def honour_cancel() -> None:
    """Raise CancelledError if the current task was asked to stop and the request was lost.

    On Python 3.11, ``asyncio.wait_for`` returns the answer and drops the CancelledError when
    the answer and the cancel arrive in the same turn of the loop; pymodbus awaits every
    response that way, so a gateway stopping at the wrong moment saw a poll loop go on for
    ever (decision 39). The task still counts the request (``Task.cancelling()``); every sleep
    of a clock looks at it first.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Clock(Protocol):
    def now(self) -> datetime:
        """The current wall-clock time, UTC, timezone-aware (it may jump)."""
        ...

    def monotonic(self) -> float:
        """Seconds of this clock's time since an arbitrary origin; never goes back and does not
        move when the wall clock is stepped."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's (monotonic) time."""
        ...


def clock_offset(clock: Clock) -> float:
    """The wall clock minus the monotonic clock, in seconds: it changes only when the wall
    clock is stepped (and by slewing, a few milliseconds a minute at most)."""
    return clock.now().timestamp() - clock.monotonic()


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        honour_cancel()
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """A clock that starts at ``start`` and runs ``speed`` times faster than real time.

    ``step(delta)`` moves its wall clock (``now()``) by ``delta``, the way NTP or a person
    steps a real one; ``monotonic()`` and sleeps are not affected.
    """

    def __init__(self, *, start: datetime, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs an aware start time")
        if speed <= 0:
            raise ValueError("speed must be above 0")
        self._start = start.astimezone(UTC)
        self._speed = speed
        self._t0 = time.monotonic()
        self._stepped = timedelta()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        return self._start + self._stepped + timedelta(seconds=self.monotonic())

    def monotonic(self) -> float:
        return (time.monotonic() - self._t0) * self._speed

    def step(self, delta: timedelta) -> None:
        """Step the wall clock by ``delta`` (negative: back)."""
        self._stepped += delta

    async def sleep(self, seconds: float) -> None:
        honour_cancel()
        await asyncio.sleep(max(0.0, seconds) / self._speed)
