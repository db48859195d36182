"""Supervision: a task that fails is an alert with its name and a restart, never a silent stop;
the rest of the gateway goes on, and stopping always commits what was accepted.

The faults come from a device driver and a sink writer injected into the gateway (the seams it
has: the registry and the drainers), not from patching the gateway's parts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.command import Command
from openbranch.edge.core.config import GatewayConfig, InfluxV1Sink
from openbranch.edge.core.device import PollResult
from openbranch.edge.core.reading import Reading, Value
from openbranch.edge.core.registry import BuildContext
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.edge.runtime.statusfile import read_status
from openbranch.edge.runtime.supervisor import Supervisor
from openbranch.edge.telemetry.sink import Drainer, InfluxV1Writer, sink_name
from tests.services import free_port
from tests.support.sources import StubDriver, StubSource, registry_of
from tests.support.waiting import until

START = datetime(2026, 12, 2, 20, 0, tzinfo=UTC)  # a Wednesday evening, self-service


def fast_clock() -> ScaledClock:
    return ScaledClock(start=START, speed=600.0)


# --- the supervisor alone ----------------------------------------------------------------


def test_a_failing_task_is_alerted_restarted_and_cleared_once_healthy() -> None:
    alerts: list[tuple[str, bool]] = []
    runs = [0]

    async def flaky() -> None:
        runs[0] += 1
        if runs[0] == 1:
            raise RuntimeError("first run fails")
        await asyncio.Event().wait()  # then runs until stopped

    async def main() -> Supervisor:
        cleared = asyncio.Event()

        def alert(kind: str, _message: str, active: bool) -> None:
            alerts.append((kind, active))
            if not active:
                cleared.set()

        supervisor = Supervisor(clock=fast_clock(), alert=alert, healthy_after=30.0)
        supervisor.start("flaky", flaky)
        async with asyncio.timeout(10):
            await cleared.wait()
        await supervisor.stop()
        return supervisor

    supervisor = asyncio.run(main())
    assert alerts == [("task_failed:flaky", True), ("task_failed:flaky", False)]
    state = supervisor.states()["flaky"]
    assert (state.restarts, state.failures, state.failing) == (1, 1, False)
    assert state.last_error.startswith("RuntimeError: first run fails at test_supervisor.py:")
    assert state.state == "stopped"


def test_a_task_that_keeps_failing_stays_alerted_and_the_others_go_on() -> None:
    ticks = [0]

    async def broken() -> None:
        raise ValueError("always")

    async def steady() -> None:
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)

    async def main() -> tuple[Supervisor, list[tuple[str, bool]]]:
        alerts: list[tuple[str, bool]] = []
        supervisor = Supervisor(
            clock=fast_clock(),
            alert=lambda kind, _m, active: alerts.append((kind, active)),
            backoff_max=4.0,
        )
        supervisor.start("broken", broken)
        supervisor.start("steady", steady)
        await until(lambda: supervisor.states()["broken"].restarts >= 5, what="5 restarts")
        await supervisor.stop()
        return supervisor, alerts

    supervisor, alerts = asyncio.run(main())
    broken_state = supervisor.states()["broken"]
    assert broken_state.failing is True
    assert broken_state.restarts >= 5
    assert set(alerts) == {("task_failed:broken", True)}  # never cleared
    assert supervisor.states()["steady"].failures == 0
    assert ticks[0] > 100


def test_a_task_that_returns_is_done_and_not_restarted() -> None:
    async def once() -> bool:
        return True

    async def main() -> Supervisor:
        supervisor = Supervisor(clock=fast_clock(), alert=lambda *_: None)
        supervisor.start("once", once)
        await until(lambda: supervisor.states()["once"].state == "done", what="done")
        await supervisor.stop()
        return supervisor

    state = asyncio.run(main()).states()["once"]
    assert (state.state, state.restarts) == ("done", 0)


# --- through a running gateway -----------------------------------------------------------


class FaultyMeter(StubSource):
    """A people counter whose first poll raises a programming error (not a DeviceError), and
    a door whose every write raises one: the coordinator and the engine step crash."""

    kind = "a faulty test device"

    def __init__(self, device_id: str, context: BuildContext) -> None:
        super().__init__(device_id, context)
        self._clock = context.clock
        self.polls = 0

    def intervals(self) -> Mapping[str, float]:
        return {"default": 10.0}

    async def poll(self, groups: Collection[str]) -> PollResult:
        self.polls += 1
        if self.polls == 1:
            raise RuntimeError("poll bug")
        reading = Reading(
            branch="sup",
            device=self._id,
            measurement=schema.OCCUPANCY,
            fields={
                schema.OCCUPANCY_ENTERED.key: self.polls,
                schema.OCCUPANCY_EXITED.key: self.polls,
            },
            time=self._clock.now(),
        )
        return PollResult(readings=[reading])

    async def write(self, command: Command) -> Value:
        raise RuntimeError(f"write bug on {command.point}")


def config(tmp_path: Path, *, sink: dict[str, str]) -> GatewayConfig:
    transport = {"type": "modbus_tcp", "host": "127.0.0.1", "port": 1, "unit_id": 1}
    return GatewayConfig.model_validate(
        {
            "branch": {"id": "sup", "name": "Supervised"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "sinks": [{**sink, "database": "nowhere"}],
            "hours": {
                "weekly": {"wed": [{"start": "08:00", "end": "22:00", "mode": "self_service"}]}
            },
            "devices": [
                {
                    "id": "counter",
                    "profile": "moxa-iologik-e1210-counter",
                    "transport": transport,
                    "poll": {"default": "10s"},
                },
            ],
            "actuators": [
                {
                    "class": "door",
                    "device": "counter",
                    "point": "relay",
                    "values": {"access_control": 1},
                },
                {"class": "alarm", "device": "counter", "point": "alarm", "values": {"armed": 1}},
            ],
        }
    )


def test_a_gateway_survives_a_crashing_device_engine_and_drainer(tmp_path: Path) -> None:
    """The coordinator's first poll raises, every engine step raises (the door's writes do),
    and the drainer's alert callback raises once while the database is unreachable: each is
    an alert naming the task and a counted restart; every accepted reading is in the store;
    the stop is clean; ``gateway status`` says it."""
    cfg = config(tmp_path, sink={"type": "influxdb_v1", "url": f"http://127.0.0.1:{free_port()}"})
    sink = cfg.sinks[0]
    assert isinstance(sink, InfluxV1Sink)
    registry = registry_of(StubDriver(FaultyMeter))
    outbox = open_outbox(cfg)
    alert_calls = [0]

    def sink_alert(kind: str | None, message: str, active: bool) -> None:
        alert_calls[0] += 1
        if alert_calls[0] == 1:
            raise RuntimeError("alert bug")

    drainer = Drainer(
        outbox=outbox,
        writer=InfluxV1Writer(sink, timeout=1.0),
        batch_size=100,
        flush_interval=0.05,
        backoff_min=0.01,
        backoff_max=0.05,
        on_alert=sink_alert,
    )
    gateway = Gateway(
        config=cfg,
        registry=registry,
        clock=fast_clock(),
        outbox=outbox,
        drainers=[drainer],
        extensions=[],
    )

    async def main() -> None:
        stop = asyncio.Event()
        run = asyncio.create_task(gateway.run(stop))

        def failed_and_restarted() -> bool:
            states = gateway.tasks.states()
            return (
                "engine" in states
                and all(
                    states[n].restarts >= 1 for n in ("device:counter", f"sink:{sink_name(sink)}")
                )
                and states["engine"].restarts >= 2
                and gateway.committer.accepted >= 3
            )

        await until(failed_and_restarted, within=30, what="every task failed and restarted")
        stop.set()
        await run  # raises nothing

    asyncio.run(main())
    states = gateway.tasks.states()
    assert states["device:counter"].failures == 1
    assert states["device:counter"].last_error.startswith("RuntimeError: poll bug")
    assert states["engine"].failing is True
    assert "RuntimeError: write bug on" in states["engine"].last_error
    assert states[f"sink:{sink_name(sink)}"].failures == 1
    assert {s.state for s in states.values()} <= {"stopped", "done"}
    assert states["watchdog"].state == "done"  # not run by systemd: nothing to ping
    accepted = gateway.committer.accepted
    outbox.close()

    store = open_outbox(cfg, read_only=True)
    occupancy = list(store.lines(measurement=schema.OCCUPANCY.name))
    assert len(occupancy) == accepted  # every accepted reading committed, the last at stop
    raised = {
        e.line.split("kind=")[1].split(" ")[0]
        for e in store.lines(measurement=schema.ALERT.name)
        if "active=true" in e.line
    }
    assert {"task_failed:device:counter", "task_failed:engine"} <= raised
    assert f"task_failed:sink:{sink_name(sink)}" in raised
    store.close()
    status = read_status(cfg.store.path)  # what `gateway status` shows
    assert status is not None
    assert status["tasks"]["engine"]["restarts"] >= 2
    assert status["tasks"]["engine"]["failing"] is True
    assert "task_failed:engine" in status["alerts"]
