"""A people counter's implausible values are refused at the source, counted, and never reach
the engine (issue 13): a real MQTT device (the Xovis profile, fed through its message handler
as the session would), its coordinator, and the engine runner's inputs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from openbranch.edge.core.config import DeviceConfig, MqttTransport
from openbranch.edge.core.messaging import Handler
from openbranch.edge.core.reading import Reading
from openbranch.edge.core.schedule import ClosingPolicy, OpeningHours
from openbranch.edge.hours.calendar import Calendar
from openbranch.edge.hours.engine import BranchEngine
from openbranch.edge.hours.reconciler import Reconciler
from openbranch.edge.runtime.coordinator import Coordinator
from openbranch.edge.runtime.engine_runner import EngineRunner
from openbranch.edge.runtime.journal import Journal
from openbranch.edge.runtime.publisher import StatePublisher
from openbranch.integrations.mqtt.device import MqttDevice
from openbranch.integrations.mqtt.profile import CATALOGUE

T0 = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
TOPIC = "xovis/entrance"


class StepClock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return (self.at - T0).total_seconds()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)
        self.at += timedelta(seconds=seconds)


class Link:
    """The session as a device sees it: subscriptions, and a way to deliver a message."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.subscribed = asyncio.Event()

    @property
    def topics(self) -> Any:
        raise NotImplementedError

    @property
    def connected(self) -> bool:
        return True

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        self.handlers[topic_filter] = handler
        self.subscribed.set()

    def publish(
        self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1
    ) -> None:
        raise NotImplementedError


def present_after(messages: Sequence[tuple[float, dict[str, Any]]]) -> tuple[Any, ...]:
    """Deliver each (seconds after T0, lines[0]) message, each followed by the engine's
    inputs as a step reads them; the last ``present``, the coordinator's refusals and what
    was emitted for the store."""
    clock = StepClock()
    link = Link()
    device = MqttDevice(
        config=DeviceConfig(
            id="entrance",
            profile="xovis-pc-line-count",
            transport=MqttTransport(type="mqtt", topic=TOPIC),
        ),
        profile=CATALOGUE.get("xovis-pc-line-count"),
        session=link,
        branch="b",
        clock=clock,
    )
    emitted: list[Reading] = []
    coordinator = Coordinator(source=device, clock=clock, emit=emitted.extend)
    journal = Journal(branch="b", clock=clock, record=lambda _r: None, publish_own=lambda _r: None)
    runner = EngineRunner(
        branch="b",
        clock=clock,
        engine=BranchEngine(
            calendar=Calendar(OpeningHours(), "Europe/Copenhagen"), policy=ClosingPolicy()
        ),
        reconciler=Reconciler(
            actuators=[], sources={}, on_alert=lambda *_a: None, on_audit=lambda _m: None
        ),
        coordinators=[coordinator],
        fire_alarm_device=None,
        overrides=lambda _now: [],
        journal=journal,
        publisher=StatePublisher(None),
        record=lambda _r: None,
    )

    async def main() -> int | None:
        task = asyncio.create_task(coordinator.run())
        await link.subscribed.wait()
        present = None
        for seconds, line in messages:
            clock.at = T0 + timedelta(seconds=seconds)
            link.handlers[TOPIC](TOPIC, json.dumps({"lines": [line]}).encode(), False)
            present = runner.inputs().present
        task.cancel()
        return present

    present = asyncio.run(main())
    return present, dict(coordinator.stats.rejected_reasons), emitted


GOOD = (0.0, {"fw": 120, "bw": 98})


@pytest.mark.parametrize(
    ("messages", "present", "refused"),
    [
        pytest.param([GOOD], 22, {}, id="a-good-count"),
        pytest.param(
            [GOOD, (5.0, {"fw": -5, "bw": -1_000_000})],
            22,
            {"out of range": 2},
            id="negative-counts-after-a-good-one",
        ),
        pytest.param(
            [(0.0, {"fw": -5, "bw": -1_000_000})], None, {"out of range": 2}, id="negative-first"
        ),
        pytest.param(
            [GOOD, (5.0, {"fw": 0, "bw": 4611686018427387904})],
            22,  # fw 0 is the counter's reset; the people counted before it are still in
            {"out of range": 1},
            id="exit-count-of-2**62",
        ),
        pytest.param(
            [(0.0, {"fw": 0, "bw": 4611686018427387904})],
            None,  # not known to be empty: the alarm is never armed on it
            {"out of range": 1},
            id="exit-count-of-2**62-first",
        ),
        pytest.param(
            [GOOD, (1.0, {"fw": 120, "bw": 5_000})],
            22,
            {"implausible": 1},
            id="a-thousand-out-in-a-second",
        ),
        pytest.param(
            [GOOD, (60.0, {"fw": 130, "bw": 100}), (61.0, {"fw": 131, "bw": 40})],
            31,
            {"implausible": 1},
            id="a-drop-that-is-no-reset",
        ),
        pytest.param(
            [GOOD, (3600.0, {"fw": 3, "bw": 1})],
            24,
            {},
            id="a-reset-keeps-the-people-counted-before-it",
        ),
    ],
)
def test_implausible_counts_are_refused_counted_and_never_used_by_the_engine(
    messages: list[tuple[float, dict[str, Any]]], present: int | None, refused: dict[str, int]
) -> None:
    got, reasons, emitted = present_after(messages)
    assert got == present
    assert reasons == refused
    for reading in emitted:
        for value in reading.fields.values():
            assert isinstance(value, int)
            assert 0 <= value <= 100_000_000
