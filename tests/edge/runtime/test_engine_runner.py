"""One engine step at a time: commands arriving during a step ask for another step, they never
start one beside it, so the reconciler's writes to the actuators never interleave (issue 12
point 3)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.command import Command
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.reading import Value
from openbranch.edge.core.registry import BuildContext
from openbranch.edge.hours.control import sign
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from tests.support.sources import StubDriver, StubSource, registry_of
from tests.support.waiting import until

KEY = "k3y-for-step-tests"
OPEN_ALL_WEEK = {
    day: [{"start": "00:00", "end": "24:00", "mode": "self_service"}]
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}


class SlowDoor(StubSource):
    """A door controller whose every write takes a while (a slow bus); it records when each
    write began and ended."""

    kind = "a slow test door"

    def __init__(self, device_id: str, context: BuildContext) -> None:
        super().__init__(device_id, context)
        self.writes: list[tuple[str, Value, float, float]] = []  # point, value, start, end

    async def write(self, command: Command) -> Value:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(0.02)
        self.writes.append((command.point, command.value, start, loop.time()))
        return command.value


def test_a_burst_of_commands_during_a_step_gives_ordered_writes(tmp_path: Path) -> None:
    os.environ["OB_TEST_STEP_KEY"] = KEY
    door_values = {"free": 0, "access_control": 1, "locked": 2, "exit_only": 3}
    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "steps", "name": "Steps"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "hours": {"weekly": OPEN_ALL_WEEK},
            "control": {"key": {"env": "OB_TEST_STEP_KEY"}},
            "devices": [
                {
                    "id": "door",
                    "profile": "moxa-iologik-e1214",
                    "transport": {"type": "modbus_tcp", "host": "127.0.0.1", "port": 1},
                }
            ],
            "actuators": [
                {"class": "door", "device": "door", "point": p, "values": door_values}
                for p in ("a", "b", "c")
            ],
        }
    )
    driver = StubDriver(SlowDoor)
    now = datetime.now(UTC)
    gateway = Gateway(
        config=config,
        registry=registry_of(driver),
        clock=ScaledClock(start=now, speed=1.0),
        outbox=open_outbox(config),
        extensions=[],
    )
    modes = ["closed", "staffed", "maintenance", "closed", "staffed", "maintenance"]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        door = driver.built[0]
        assert isinstance(door, SlowDoor)
        await until(lambda: len(door.writes) == 3, what="the first step's writes")
        # A burst while a step is writing: each command would have started a step of its own.
        gateway.desk.on_message("t", control("override", now, mode="closed", n=0), False)
        await until(lambda: len(door.writes) > 3, what="the next step writing")
        for i, mode in enumerate(modes[1:], start=1):
            gateway.desk.on_message("t", control("override", now, mode=mode, n=i), False)
        locked = door_values["locked"]  # maintenance, the last override, wins
        await until(
            lambda: [w[1] for w in door.writes[-3:]] == [locked] * 3,
            what="the step the burst asked for",
        )
        stop.set()
        await task

    asyncio.run(main())
    writes = door_writes(driver)
    for (_, _, _, end), (_, _, start, _) in itertools.pairwise(writes):
        assert start >= end, "two writes to the actuators overlapped"
    # Each step writes a, b, c in order, with one value for all three.
    for i in range(0, len(writes), 3):
        step = writes[i : i + 3]
        assert [w[0] for w in step] == ["a", "b", "c"]
        assert len({w[1] for w in step}) == 1
    # The burst arrived during one step: it gave one more step, not one per command.
    assert gateway.engine.steps == 3


def control(action: str, now: datetime, *, n: int, **extra: str) -> bytes:
    message = {
        "id": f"burst-{n}",
        "issued_at": now.isoformat(),
        "expires_at": (now + timedelta(minutes=5)).isoformat(),
        "action": action,
        "who": "ops:test",
        "reason": "burst",
        "until": (now + timedelta(hours=1)).isoformat(),
        **extra,
    }
    return json.dumps(sign(message, KEY.encode())).encode()


def door_writes(driver: StubDriver) -> list[tuple[str, Value, float, float]]:
    door = driver.built[0]
    assert isinstance(door, SlowDoor)
    return door.writes
