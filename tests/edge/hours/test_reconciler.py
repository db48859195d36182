"""The reconciler re-verifies what it confirmed (issue 12 point 6): every ``reverify`` of
gateway time it reads each confirmed actuator again; a drift is audited, alerted once and
set again; a source that cannot read a point is trusted; a failed read is not a drift. The
last test drifts a relay and a DALI light on real Modbus TCP, simulated from their profiles."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from openbranch.edge.core.clock import SystemClock
from openbranch.edge.core.command import Command
from openbranch.edge.core.config import DeviceConfig
from openbranch.edge.core.device import DeviceUnreachable
from openbranch.edge.core.reading import Value
from openbranch.edge.core.registry import BuildContext, default_registry
from openbranch.edge.core.schedule import Actuator
from openbranch.edge.hours.policy import DESIRED, Mode
from openbranch.edge.hours.reconciler import Reconciler
from tests.services import free_port
from tests.support.sources import StubSource

CLOSED = DESIRED[Mode.CLOSED]  # alarm armed, lights 0 %
SELF_SERVICE = DESIRED[Mode.SELF_SERVICE]  # alarm disarmed, lights 80 %
STEP = timedelta(seconds=30)
ALARM = Actuator.model_validate(
    {
        "class": "alarm",
        "device": "door",
        "point": "alarm_arm_relay",
        "values": {"armed": True, "disarmed": False},
    }
)
LIGHTS = Actuator.model_validate({"class": "lights", "device": "lights", "point": "target_g0"})


class Relay(StubSource):
    """A device with one writable point that writes land on, read back on request."""

    kind = "a test relay"

    def __init__(self, device_id: str = "door") -> None:
        super().__init__(device_id)
        self.value: Value = False
        self.reads = 0
        self.down = False

    async def write(self, command: Command) -> Value:
        self.value = command.value
        return self.value

    async def read_point(self, point: str) -> Value:
        self.reads += 1
        if self.down:
            raise DeviceUnreachable(f"{self._id}: no answer")
        return self.value


class BlindRelay(Relay):
    """A relay whose source cannot read a point on demand (no ``read_point``)."""

    read_point = None  # type: ignore[assignment]


class Recorded:
    def __init__(self) -> None:
        self.alerts: list[tuple[str, str, bool]] = []
        self.audit: list[str] = []

    def reconciler(self, source: Relay, **options: Any) -> Reconciler:
        return Reconciler(
            actuators=[ALARM],
            sources={source.device_id: source},
            on_alert=lambda kind, message, active: self.alerts.append((kind, message, active)),
            on_audit=self.audit.append,
            **options,
        )


class Steps:
    """Pass times: ``at(n)`` is ``n`` engine steps after the test began (the devices check a
    command's expiry against their own clock, which is now)."""

    def __init__(self) -> None:
        self.start = datetime.now(UTC)

    def __call__(self, steps: float) -> datetime:
        return self.start + steps * STEP


def test_a_confirmed_actuator_is_read_again_each_interval_not_each_pass() -> None:
    async def main() -> None:
        at = Steps()
        relay, seen = Relay(), Recorded()
        reconciler = seen.reconciler(relay)  # re-verifies every minute by default
        assert await reconciler.reconcile(at(0), CLOSED, "closed") == 1
        assert relay.reads == 0  # the write's own confirmation counts
        assert await reconciler.reconcile(at(1), CLOSED, "closed") == 0
        assert relay.reads == 0
        assert await reconciler.reconcile(at(2), CLOSED, "closed") == 0
        assert relay.reads == 1
        assert await reconciler.reconcile(at(3), CLOSED, "closed") == 0
        assert relay.reads == 1
        assert await reconciler.reconcile(at(4), CLOSED, "closed") == 0
        assert relay.reads == 2
        assert await reconciler.reconcile(at(-120), CLOSED, "closed") == 0  # clock stepped back
        assert relay.reads == 3
        assert seen.alerts == []
        assert seen.audit == ["door.alarm_arm_relay := True (closed)"]

        never = Relay()
        quiet = seen.reconciler(never, reverify=None)
        await quiet.reconcile(at(0), CLOSED, "closed")
        never.value = False
        assert await quiet.reconcile(at(100), CLOSED, "closed") == 0
        assert never.reads == 0

    asyncio.run(main())


def test_a_source_that_cannot_read_its_points_is_trusted() -> None:
    async def main() -> None:
        at = Steps()
        relay, seen = BlindRelay(), Recorded()
        reconciler = seen.reconciler(relay, reverify=2 * STEP)
        assert await reconciler.reconcile(at(0), CLOSED, "closed") == 1
        relay.value = False  # drifted, but nothing can tell
        for step in (2, 4, 6):
            assert await reconciler.reconcile(at(step), CLOSED, "closed") == 0
        assert seen.alerts == []

    asyncio.run(main())


def test_a_failed_read_is_not_a_drift(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        at = Steps()
        relay, seen = Relay(), Recorded()
        reconciler = seen.reconciler(relay, reverify=2 * STEP)
        await reconciler.reconcile(at(0), CLOSED, "closed")
        relay.down = True
        with caplog.at_level(logging.WARNING, logger="openbranch.edge.hours.reconciler"):
            for step in (2, 4, 6):
                assert await reconciler.reconcile(at(step), CLOSED, "closed") == 0
        assert relay.reads == 3
        assert [r.getMessage() for r in caplog.records] == [
            "door.alarm_arm_relay: not re-verified: door: no answer"
        ]  # once, not on every pass
        assert seen.alerts == []
        assert seen.audit == ["door.alarm_arm_relay := True (closed)"]

        relay.down, relay.value = False, False  # back, and disarmed meanwhile
        assert await reconciler.reconcile(at(8), CLOSED, "closed") == 1
        assert relay.value is True
        assert [(k, a) for k, _, a in seen.alerts] == [
            ("actuator_drift:door.alarm_arm_relay", True),
            ("actuator_drift:door.alarm_arm_relay", False),
        ]

    asyncio.run(main())


def test_a_relay_and_a_light_that_drift_on_modbus_are_set_again() -> None:
    port = free_port()

    def device(device_id: str, profile: str, unit: int) -> DeviceConfig:
        transport = {"type": "modbus_tcp", "host": "127.0.0.1", "port": port, "unit_id": unit}
        return DeviceConfig.model_validate(
            {"id": device_id, "profile": profile, "transport": {**transport, "timeout": 0.5}}
        )

    configs = [
        device("door", "moxa-iologik-e1214", 1),
        device("lights", "lunatone-dali2-modbus", 3),
    ]

    async def main() -> None:
        at = Steps()
        registry = default_registry()
        (simulation,) = registry.simulate(configs)
        await simulation.start()
        context = BuildContext(branch="drift", clock=SystemClock())
        sources = {c.id: registry.build(c, context) for c in configs}
        sims = simulation.devices
        alerts: list[tuple[str, str, bool]] = []
        audit: list[str] = []
        reconciler = Reconciler(
            actuators=[ALARM, LIGHTS],
            sources=sources,
            on_alert=lambda kind, message, active: alerts.append((kind, message, active)),
            on_audit=audit.append,
            reverify=2 * STEP,
        )
        try:
            assert await reconciler.reconcile(at(0), SELF_SERVICE, "self_service") == 2
            assert sims["lights"].get("target_g0") == pytest.approx(80, abs=0.5)  # DALI steps
            assert await reconciler.reconcile(at(2), SELF_SERVICE, "self_service") == 0

            assert await reconciler.reconcile(at(3), CLOSED, "closed") == 2
            assert sims["door"].get("alarm_arm_relay") is True
            assert sims["lights"].get("target_g0") == 0
            sims["door"].set("alarm_arm_relay", False)  # disarmed at the panel
            sims["lights"].set("target_g0", 100.0)  # switched on at the wall
            assert await reconciler.reconcile(at(4), CLOSED, "closed") == 0  # not due yet
            assert await reconciler.reconcile(at(5), CLOSED, "closed") == 2
            assert sims["door"].get("alarm_arm_relay") is True
            assert sims["lights"].get("target_g0") == 0
            assert [(k, a) for k, _, a in alerts] == [
                ("actuator_drift:door.alarm_arm_relay", True),
                ("actuator_drift:door.alarm_arm_relay", False),
                ("actuator_drift:lights.target_g0", True),
                ("actuator_drift:lights.target_g0", False),
            ]
            drift_door, door, drift_lights, lights = audit[-4:]
            assert drift_door == "door.alarm_arm_relay drifted: reads False, want True"
            assert door == "door.alarm_arm_relay := True (closed, re-asserted after drift)"
            assert drift_lights.startswith("lights.target_g0 drifted: reads 99.9")  # 254 * scale
            assert drift_lights.endswith(", want 0.0")
            assert lights == "lights.target_g0 := 0.0 (closed, re-asserted after drift)"
            assert await reconciler.reconcile(at(7), CLOSED, "closed") == 0  # follows
            assert len(alerts) == 4
        finally:
            for source in sources.values():
                await source.close()
            await simulation.stop()

    asyncio.run(main())
