"""Time, injected. The gateway asks a clock for "now" and sleeps on it, so tests and the demo
can run a branch's day in seconds with the same code that runs it in real time."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ScaledClock", "SystemClock", "honour_cancel"]


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
        """The current time, UTC, timezone-aware."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        honour_cancel()
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """A clock that starts at ``start`` and runs ``speed`` times faster than real time."""

    def __init__(self, *, start: datetime, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs an aware start time")
        if speed <= 0:
            raise ValueError("speed must be above 0")
        self._start = start.astimezone(UTC)
        self._speed = speed
        self._t0 = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self._speed)

    async def sleep(self, seconds: float) -> None:
        honour_cancel()
        await asyncio.sleep(max(0.0, seconds) / self._speed)
