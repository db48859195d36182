"""A device that answers every request with an exception is unavailable (found by the soak,
issue 14). It was "reached", so it stayed available with its last values: no alert, and the
engine went on deciding from a people count that no longer moved. A poll that gives no value
at all because every request failed now counts as the device not answering; a poll where
some block answered keeps it available (one refused block costs only its points).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from datetime import UTC, datetime

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.device import Accept, PollResult, Reject
from openbranch.edge.core.reading import Reading
from openbranch.edge.runtime.coordinator import Coordinator

T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)
REFUSED = "unit 1 input 16+4: exception 4 (server device failure)"


class Counter:
    """A people counter whose answers the test sets: values, or exceptions for every block."""

    device_id = "counter"

    def __init__(self) -> None:
        self.failing: tuple[str, ...] = ()
        self.partly = False

    def intervals(self) -> Mapping[str, float]:
        return {"default": 60.0}

    def describe_plan(self) -> str:
        return "counter: one request"

    async def poll(self, groups: Collection[str]) -> PollResult:
        reading = Reading(
            branch="b",
            device="counter",
            measurement=schema.OCCUPANCY,
            fields={"entered": 10, "exited": 4},
            time=T0,
        )
        if self.failing and not self.partly:
            return PollResult(reached=True, failures=self.failing, missing={"entered": REFUSED})
        return PollResult(readings=(reading,), failures=self.failing if self.partly else ())

    async def listen(self, accept: Accept, reject: Reject) -> None:
        return

    async def write(self, command: object) -> object:
        raise NotImplementedError

    async def close(self) -> None:
        return


def test_a_device_that_answers_only_exceptions_is_unavailable_until_it_answers_again() -> None:
    source = Counter()
    changes: list[tuple[str, bool]] = []
    coordinator = Coordinator(
        source=source,  # type: ignore[arg-type]
        clock=ScaledClock(start=T0, speed=1),
        emit=lambda _r: None,
        on_availability=lambda device, available: changes.append((device, available)),
    )

    async def main() -> None:
        await coordinator.poll_once()
        assert coordinator.available is True
        source.failing = (REFUSED,)
        await coordinator.poll_once()
        assert coordinator.available is False  # nothing of it could be read
        assert coordinator.stats.last_failure == REFUSED
        source.partly = True  # one block refused, the rest answers
        await coordinator.poll_once()
        assert coordinator.available is True
        assert coordinator.stats.failed_requests == 2  # both refusals counted

    asyncio.run(main())
    assert changes == [("counter", True), ("counter", False), ("counter", True)]
    assert coordinator.stats.downs == 1
