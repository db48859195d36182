"""Time that can jump (issue 12 point 9): the wall clock of a running gateway is stepped an
hour back, and a day forward and back, the way NTP steps a drifted clock. Polling goes on (it
is scheduled on the monotonic clock), the devices stay available, no energy hour is written
for a time the clock has not reached, no reading is refused, and no mode change is made twice.

The gateway runs on the injected ``ScaledClock`` against simulated Modbus devices (a meter and
a people counter on one Modbus TCP port); every wait is on a count the gateway keeps.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.device import Accept, PollResult, Reject
from openbranch.edge.core.registry import default_registry
from openbranch.edge.core.schedule import Mode
from openbranch.edge.runtime.coordinator import Coordinator
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from tests.services import free_port
from tests.support.waiting import until

CPH = ZoneInfo("Europe/Copenhagen")
START = datetime(2026, 11, 25, 21, 52, tzinfo=CPH)  # a Wednesday, 8 minutes before closing
SPEED = 120  # two branch minutes per real second
KWH_PER_HOUR = 6.0  # the meter's consumption, in monotonic (true) time
EVERY_DAY = {
    day: [{"start": "08:00", "end": "22:00", "mode": "self_service"}]
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}


# -- one coordinator and a stand-in device: the schedule itself ------------------------------


class Counting:
    """A polled device that only counts its polls."""

    device_id = "stand-in"

    def __init__(self) -> None:
        self.polls = 0

    def intervals(self) -> Mapping[str, float]:
        return {"fast": 10.0}

    def describe_plan(self) -> str:
        return "stand-in: one group every 10 s"

    async def poll(self, groups: Collection[str]) -> PollResult:
        self.polls += 1
        return PollResult(reached=True)

    async def listen(self, accept: Accept, reject: Reject) -> None:
        return

    async def write(self, command: object) -> object:
        raise NotImplementedError

    async def close(self) -> None:
        return


def test_a_coordinator_polls_on_through_steps_of_the_wall_clock() -> None:
    """Before: the due time was on the wall clock, so an hour back meant an hour (6 real s at
    600x) without a poll, and a day back a day."""
    clock = ScaledClock(start=START, speed=600)  # a 10 s interval is 1/60 real second
    source = Counting()
    coordinator = Coordinator(source=source, clock=clock, emit=lambda _r: None)  # type: ignore[arg-type]

    async def main() -> None:
        task = asyncio.create_task(coordinator.run())
        try:
            for step in (-timedelta(hours=1), timedelta(days=1), -timedelta(days=1)):
                await until(lambda: source.polls >= 3, within=5, what="polls before the step")
                before = source.polls
                clock.step(step)
                await until(
                    lambda: source.polls >= before + 5,  # noqa: B023 - read at once
                    within=3,
                    what=f"five more polls after a step of {step}",
                )
                after_step = source.polls
                then = clock.monotonic()
                await until(
                    lambda t=then: clock.monotonic() >= t + 60,  # type: ignore[misc]
                    within=3,
                    what="a minute",
                )
                assert source.polls - after_step <= 8  # on schedule: no burst to catch up
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert coordinator.available is True
    assert coordinator.stats.downs == 0


# -- a whole gateway ---------------------------------------------------------------------------


def config(tmp_path: Path) -> GatewayConfig:
    port = free_port()

    def modbus(unit: int) -> dict[str, Any]:
        return {
            "type": "modbus_tcp",
            "host": "127.0.0.1",
            "port": port,
            "unit_id": unit,
            "timeout": 0.5,
        }

    return GatewayConfig.model_validate(
        {
            "branch": {"id": "jumps", "name": "Clock step test branch"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "hours": {"weekly": EVERY_DAY},
            "devices": [
                {
                    "id": "meter",
                    "profile": "eastron-sdm630",
                    "transport": modbus(1),
                    "poll": {"default": "10s", "energy": "10s"},
                },
                {
                    "id": "counter",
                    "profile": "moxa-iologik-e1210-counter",
                    "transport": modbus(2),
                    "poll": {"default": "10s"},
                },
            ],
        }
    )


def field(line: str, key: str) -> float | None:
    found = re.search(rf"[ ,]{key}=([-0-9.e+]+)", line)
    return None if found is None else float(found.group(1))


def stamp(line: str) -> datetime:
    return datetime.fromtimestamp(int(line.rsplit(" ", 1)[1]) / 1e9, tz=UTC)


def test_a_gateway_goes_on_through_an_hour_back_and_a_day_forward_and_back(
    tmp_path: Path,
) -> None:
    """The order: a day forward (Thursday, still open), a day back (Wednesday, more than the
    engine holds: a new time, still open), then the clock passes 22:00 and the branch closes,
    then an hour back (21:0x, open on the calendar: the engine holds "closed")."""
    cfg = config(tmp_path)
    registry = default_registry()
    clock = ScaledClock(start=START, speed=SPEED)
    outbox = open_outbox(cfg)
    gateway = Gateway(config=cfg, registry=registry, clock=clock, outbox=outbox, extensions=[])
    (simulation,) = registry.simulate(cfg.devices)
    meter = simulation.devices["meter"]
    audits: list[tuple[str, str]] = []
    gateway.journal.listeners.append(lambda kind, message: audits.append((kind, message)))
    coordinators = {c.device_id: c for c in gateway.coordinators}
    now_at_end: list[datetime] = []

    def mode() -> Mode | None:
        decision = gateway.engine.last_decision
        return None if decision is None else decision.mode

    async def goes_on(what: str) -> None:
        """Every device polled three more times and two more engine steps, all available."""
        polls = {name: c.stats.polls for name, c in coordinators.items()}
        steps = gateway.engine.steps
        await until(
            lambda: (
                all(c.stats.polls >= polls[n] + 3 for n, c in coordinators.items())
                and gateway.engine.steps >= steps + 2
            ),
            within=15,
            what=f"polls and engine steps {what}",
        )
        assert all(c.available is True for c in coordinators.values()), what

    async def count() -> None:
        """The meter counts on monotonic (true) time, whatever the wall clock says."""
        while True:
            meter.set("import_kwh", 1000.0 + clock.monotonic() / 3600 * KWH_PER_HOUR)
            await asyncio.sleep(0.01)

    async def main() -> None:
        meter.set("import_kwh", 1000.0)
        await simulation.start()
        counting = asyncio.create_task(count())
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await until(lambda: mode() is Mode.SELF_SERVICE, within=15, what="the first step")
            await goes_on("at the start")
            clock.step(timedelta(days=1))
            await goes_on("after a day forward")
            assert mode() is Mode.SELF_SERVICE
            clock.step(-timedelta(days=1))
            await goes_on("after a day back")
            assert mode() is Mode.SELF_SERVICE
            await until(lambda: mode() is Mode.CLOSED, within=15, what="closing at 22:00")
            clock.step(-timedelta(hours=1))
            await goes_on("after an hour back over the closing")
            assert mode() is Mode.CLOSED
            now_at_end.append(clock.now())
        finally:
            stop.set()
            await task
            counting.cancel()
            await asyncio.gather(counting, return_exceptions=True)
            await simulation.stop()

    asyncio.run(main())
    stored = outbox.lines(measurement=schema.ENERGY.name, device="meter")  # in time order
    energy = [e.line for e in sorted(stored, key=lambda e: e.seq)]  # as they were read
    hourly = [e.line for e in outbox.lines(measurement=schema.ENERGY_HOURLY.name)]
    outbox.close()

    assert all(c.stats.downs == 0 for c in coordinators.values())  # never went unavailable
    modes = [message for kind, message in audits if kind == "mode"]
    assert modes == ["start -> self_service", "self_service -> closed"]  # each once, in order
    notes = [message for kind, message in audits if kind == "engine"]
    assert sum("clock went back 1:00:00" in n or "clock went back 0:59" in n for n in notes) == 1
    # every meter reading was counted (none refused as "not after the previous one") and the
    # total never fell, through all three steps
    totals = [field(line, schema.ENERGY_TOTAL.key) for line in energy]
    assert len(totals) >= 12
    counted = [t for t in totals if t is not None]
    assert counted == totals
    assert counted == sorted(counted)
    # the day forward closed the hour that was open (20:00 UTC); nothing was written for the
    # hours the clock skipped, so nothing is in the future now that the clock is back
    assert hourly, "no hour was closed: the check below would prove nothing"
    assert [stamp(line) for line in hourly] == [START.replace(minute=0, second=0)]
    assert all(stamp(line) <= now_at_end[0] for line in hourly)
    consumption = field(hourly[0], schema.HOURLY_CONSUMPTION.key)
    assert consumption is not None
    assert 0 < consumption < KWH_PER_HOUR / 60 * 8  # the minutes before the step, not a day
