"""A restart keeps the people counters' last totals and baselines (found by the soak, issue 14).

The demo branch counts at two entrances: a polled Modbus counter and an MQTT counter that
publishes only when someone passes. After a restart in closed hours the polled counter answered
at once, the MQTT counter had nothing to say, and the engine summed the one it had heard from:
more people had left by that door than came in (-11), the branch read as empty while the other
entrance's +12 still said one person was inside, and the alarm was armed over them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.device import PollResult
from openbranch.edge.core.reading import Reading
from openbranch.edge.hours.engine import Phase
from openbranch.edge.runtime.engine_runner import OCCUPANCY_STATE
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from tests.support.sources import StubDriver, StubSource, registry_of
from tests.support.waiting import until

CLOSED_ALL_WEEK: dict[str, list[object]] = {
    day: [] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}


class Counter(StubSource):
    """A people counter with fixed totals; ``silent`` ones have not spoken in this run (an MQTT
    counter that nobody has passed since the restart)."""

    kind = "a test people counter"
    totals: ClassVar[dict[str, tuple[int, int]]] = {}
    silent: ClassVar[set[str]] = set()

    def intervals(self) -> Mapping[str, float]:
        return {} if self.device_id in self.silent else {"counts": 60.0}

    async def poll(self, groups: Collection[str]) -> PollResult:
        entered, exited = self.totals[self.device_id]
        assert self.context is not None
        reading = Reading(
            branch="restart",
            device=self.device_id,
            measurement=schema.OCCUPANCY,
            fields={schema.OCCUPANCY_ENTERED.key: entered, schema.OCCUPANCY_EXITED.key: exited},
            time=datetime.now(UTC),
        )
        return PollResult(readings=(reading,))


def config_of(tmp_path: Path) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "branch": {"id": "restart", "name": "Restart"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "hours": {"weekly": CLOSED_ALL_WEEK},
            "closing": {"lights_off_after_empty": 0},
            "devices": [
                {
                    "id": device,
                    "profile": "moxa-iologik-e1210-counter",
                    "transport": {"type": "modbus_tcp", "host": "127.0.0.1", "port": 1},
                }
                for device in ("door-a", "door-b")
            ],
        }
    )


def run_until(config: GatewayConfig, *, silent: set[str], phase: Phase) -> Gateway:
    """Run the gateway until its engine has decided ``phase``, then stop it cleanly."""
    Counter.silent = silent
    gateway = Gateway(
        config=config,
        registry=registry_of(StubDriver(Counter)),
        clock=ScaledClock(start=datetime.now(UTC), speed=1.0),
        outbox=open_outbox(config),
        extensions=[],
    )

    def decided() -> bool:
        decision = gateway.engine.last_decision
        if decision is not None and decision.phase is phase:
            return True
        gateway.engine.request_step()
        return False

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        await until(decided, what=f"the engine deciding {phase}")
        stop.set()
        await task

    asyncio.run(main())
    gateway.outbox.close()  # as a process's end would
    return gateway


def saved_state(config: GatewayConfig) -> object:
    outbox = open_outbox(config)
    try:
        raw = outbox.get_state(OCCUPANCY_STATE)
    finally:
        outbox.close()
    assert raw is not None
    return json.loads(raw)


def test_a_counter_silent_since_the_restart_still_counts_who_it_saw(tmp_path: Path) -> None:
    Counter.totals = {"door-a": (295, 306), "door-b": (169, 157)}  # -11 and +12: one inside
    config = config_of(tmp_path)
    first = run_until(config, silent=set(), phase=Phase.CLOSING)
    assert first.engine.inputs().present == 1
    assert saved_state(config) == {"door-a": [295, 306, 0], "door-b": [169, 157, 0]}

    second = run_until(config, silent={"door-b"}, phase=Phase.CLOSING)  # door-b: no word yet
    assert second.engine.occupancy["door-b"].known
    assert second.engine.inputs().present == 1  # was 0: door-a's -11 alone, clamped


def test_the_daily_correction_survives_a_restart(tmp_path: Path) -> None:
    """Verified empty with the counters at -3 and +2 (someone counted out twice): that is the
    day's zero. One person comes in by door-a after a restart: one inside, not zero."""
    Counter.totals = {"door-a": (10, 13), "door-b": (5, 3)}
    config = config_of(tmp_path)
    run_until(config, silent=set(), phase=Phase.SECURED)
    assert saved_state(config) == {"door-a": [10, 13, -3], "door-b": [5, 3, 2]}

    Counter.totals["door-a"] = (11, 13)
    second = run_until(config, silent={"door-b"}, phase=Phase.CLOSING)
    assert second.engine.inputs().present == 1  # without the baselines: -2 + 2 = 0, armed


def test_the_totals_come_from_the_readings_accepted_not_a_later_save(tmp_path: Path) -> None:
    """The state is saved an engine step after the reading is committed: a SIGKILL between
    the two left it a person behind (+13 where the last accepted reading said +12), and a
    branch whose MQTT counter then stayed silent read one person inside all night."""
    Counter.totals = {"door-a": (295, 306), "door-b": (169, 157)}
    config = config_of(tmp_path)
    run_until(config, silent=set(), phase=Phase.CLOSING)
    outbox = open_outbox(config)
    try:  # the save of the step before door-b's last reading (169, 156) is all there is
        outbox.set_state(
            OCCUPANCY_STATE, json.dumps({"door-a": [295, 306, 0], "door-b": [169, 156, 0]})
        )
    finally:
        outbox.close()
    second = run_until(config, silent={"door-b"}, phase=Phase.CLOSING)
    assert second.engine.occupancy["door-b"].net == 12
    assert second.engine.inputs().present == 1  # was 2 from the state saved a step earlier


def test_an_older_count_after_a_restart_does_not_empty_the_branch(tmp_path: Path) -> None:
    """After a restart the broker sends again a message it had already delivered (QoS 1: its
    acknowledgement was lost with the old process): door-b's exits read 155 where the store
    last said 157. Taken as the counter's own reset, it moved the baseline by 157 and a branch
    with one person inside read as empty (found by the soak: the alarm armed at closing)."""
    Counter.totals = {"door-a": (295, 306), "door-b": (169, 157)}
    config = config_of(tmp_path)
    run_until(config, silent=set(), phase=Phase.CLOSING)
    Counter.totals["door-b"] = (169, 155)  # the older message, first after the restart
    second = run_until(config, silent=set(), phase=Phase.CLOSING)
    assert second.engine.occupancy["door-b"].net == 12
    assert second.engine.inputs().present == 1
