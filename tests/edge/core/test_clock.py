"""The clocks: a gateway stops even when a library swallowed the cancel (decision 39), and a
step of the wall clock moves neither the monotonic clock nor a sleep (issue 12 point 9).

On Python 3.11, ``asyncio.wait_for`` returns the answer and drops the CancelledError when the
answer and the cancel arrive in the same turn of the loop, and pymodbus awaits every response
that way: a poll loop cancelled at that moment went on for ever and the gateway's stop (and the
demo test) hung. The clocks' sleeps honour a cancel that is still counted on the task.

The device here is a stand-in whose poll swallows the cancel the way that ``wait_for`` does,
so the moment can be had on every run; the real devices' tests are in tests/integrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from openbranch.edge.core.clock import Clock, ScaledClock, SystemClock, clock_offset
from openbranch.edge.core.device import Accept, PollResult, Reject
from openbranch.edge.runtime.coordinator import Coordinator

CLOCKS = [SystemClock(), ScaledClock(start=datetime(2026, 11, 30, 21, 55, tzinfo=UTC), speed=60)]


@pytest.mark.parametrize("clock", CLOCKS, ids=["system", "scaled"])
def test_a_swallowed_cancel_is_honoured_at_the_next_sleep(clock: Clock) -> None:
    slept: list[float] = []

    async def loop_that_lost_its_cancel() -> None:
        me = asyncio.current_task()
        assert me is not None
        me.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # as 3.11's wait_for may
            await asyncio.sleep(0)
        await clock.sleep(0.01)
        slept.append(1.0)

    async def main() -> None:
        task = asyncio.create_task(loop_that_lost_its_cancel())
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    asyncio.run(main())
    assert slept == []


def test_sleeping_without_a_cancel_still_sleeps() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await SystemClock().sleep(0.05)
        return loop.time() - start

    assert asyncio.run(main()) >= 0.04


class _Swallowing:
    """A polled device whose poll, like pymodbus on 3.11, returns its answer and drops the
    cancel when both arrive together."""

    device_id = "meter"

    def __init__(self) -> None:
        self.answer: asyncio.Future[None] | None = None
        self.polling = asyncio.Event()
        self.swallowed = False
        self.polls = 0

    def intervals(self) -> Mapping[str, float]:
        return {"fast": 0.01}

    def describe_plan(self) -> str:
        return "meter: stand-in"

    async def poll(self, groups: Collection[str]) -> PollResult:
        self.polls += 1
        self.answer = asyncio.get_running_loop().create_future()
        self.polling.set()
        try:
            await self.answer
        except asyncio.CancelledError:
            if self.swallowed:  # only once, so a failing test ends instead of hanging
                raise
            self.swallowed = True
        return PollResult(reached=True)

    async def listen(self, accept: Accept, reject: Reject) -> None:
        return

    async def write(self, command: object) -> object:
        raise NotImplementedError

    async def close(self) -> None:
        return


def test_a_coordinator_stops_when_its_poll_swallowed_the_cancel() -> None:
    async def main() -> int:
        source = _Swallowing()
        coordinator = Coordinator(source=source, clock=SystemClock(), emit=lambda _r: None)  # type: ignore[arg-type]
        task = asyncio.create_task(coordinator.run())
        await source.polling.wait()
        assert source.answer is not None
        source.answer.set_result(None)
        task.cancel()  # the answer and the cancel in the same turn of the loop
        async with asyncio.timeout(5):  # before the fix: polled on for ever
            with pytest.raises(asyncio.CancelledError):
                await task
        return source.polls

    assert asyncio.run(main()) == 1


# -- two readings: the wall clock, which can be stepped, and the monotonic one (issue 12.9) --


def test_a_step_moves_the_wall_clock_only() -> None:
    clock = ScaledClock(start=datetime(2026, 11, 30, 21, 55, tzinfo=UTC), speed=60)
    before_wall, before_mono = clock.now(), clock.monotonic()
    before_offset = clock_offset(clock)
    clock.step(-timedelta(hours=1))
    after_wall, after_mono = clock.now(), clock.monotonic()
    assert after_mono >= before_mono  # the monotonic clock does not go back
    assert after_mono - before_mono < 60  # (less than a real second went by, at 60x)
    assert after_wall - before_wall == pytest.approx(
        timedelta(seconds=after_mono - before_mono) - timedelta(hours=1), abs=timedelta(seconds=1)
    )
    assert clock_offset(clock) - before_offset == pytest.approx(-3600, abs=0.5)
    clock.step(timedelta(days=1))
    assert clock_offset(clock) - before_offset == pytest.approx(86_400 - 3600, abs=0.5)


def test_a_scaled_sleep_is_monotonic_time_whatever_the_wall_clock_does() -> None:
    clock = ScaledClock(start=datetime(2026, 11, 30, 21, 55, tzinfo=UTC), speed=600)

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        start, mono = loop.time(), clock.monotonic()
        sleeper = asyncio.create_task(clock.sleep(60))  # 0.1 real seconds
        await asyncio.sleep(0)
        clock.step(-timedelta(hours=1))  # nothing that sleeps waits for the wall clock
        await sleeper
        return loop.time() - start, clock.monotonic() - mono

    real, slept = asyncio.run(main())
    assert 0.09 <= real < 2.0
    assert slept >= 59.0


def test_the_system_clock_reads_the_monotonic_clock() -> None:
    clock = SystemClock()
    before = time.monotonic()
    reading = clock.monotonic()
    assert before <= reading <= time.monotonic()
    assert abs(clock_offset(clock) - (time.time() - time.monotonic())) < 0.1
