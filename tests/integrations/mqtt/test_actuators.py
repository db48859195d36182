"""MQTT actuators are confirmed by the device's own state message and re-verified later: a
Danalock lock (through Zigbee2MQTT) simulated on a private Mosquitto, driven by the
reconciler (issue 12 point 6). A lock that never confirms is retried and alerted; a lock
opened by hand is noticed, locked again, alerted once and cleared when it follows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from openbranch.edge.core.clock import SystemClock
from openbranch.edge.core.command import Command
from openbranch.edge.core.config import DeviceConfig, MqttConfig
from openbranch.edge.core.device import NotConfirmed
from openbranch.edge.core.reading import Reading
from openbranch.edge.core.schedule import Actuator
from openbranch.edge.hours.policy import DESIRED, Mode
from openbranch.edge.hours.reconciler import Reconciler
from openbranch.edge.runtime.coordinator import Coordinator
from openbranch.edge.runtime.mqtt import MqttSession
from openbranch.integrations.mqtt import CATALOGUE, MqttDevice
from openbranch.integrations.mqtt.simulator import MqttSimulation, SimulatedMqttDevice
from tests.services import Mosquitto
from tests.support.waiting import until

BRANCH = "lock-branch"
LOCK = DeviceConfig.model_validate(
    {
        "id": "staff-door",
        "profile": "danalock-v3-zigbee",
        "transport": {"type": "mqtt", "topic": "zigbee2mqtt/staff-door"},
    }
)
ACTUATOR = Actuator.model_validate(
    {
        "class": "door",
        "device": "staff-door",
        "point": "locked",
        "values": {"locked": True, "exit_only": True, "access_control": False, "free": False},
    }
)
CLOSED = DESIRED[Mode.CLOSED]  # the door locked
STEP = timedelta(seconds=30)  # the engine's step; the reconciler re-verifies every 2 steps
FAILED = "actuator:staff-door.locked"
DRIFT = "actuator_drift:staff-door.locked"


@dataclass
class Lock:
    device: MqttDevice
    sim: SimulatedMqttDevice
    reconciler: Reconciler
    alerts: list[tuple[str, str, bool]]
    audit: list[str]
    readings: list[Reading]
    start: datetime  # the first pass's time: now, for the device checks a command's expiry

    def raised(self, kind: str) -> list[bool]:
        """Each raise (True) and clear (False) of alert ``kind``, in order."""
        return [active for k, _, active in self.alerts if k == kind]

    async def heard(self, value: bool) -> None:
        """Wait until the gateway has the lock's report of ``value``."""
        await until(
            lambda: (self.device.reported("locked") or (None,))[0] is value,
            what=f"the lock's report of {value}",
        )

    async def reconcile(self, steps: int) -> int:
        """A reconciler pass ``steps`` engine steps after the start, the branch closed."""
        return await self.reconciler.reconcile(self.start + steps * STEP, CLOSED, "closed")


@asynccontextmanager
async def lock_on(broker: Mosquitto, *, confirm_timeout: float = 5.0) -> AsyncIterator[Lock]:
    """The lock's MqttDevice listening through a session (run by its coordinator, as in the
    gateway), the simulated lock taking commands, and a reconciler (an alert after 3 failed
    attempts, a confirmed lock re-verified every minute)."""
    mqtt = MqttConfig(host=broker.host, port=broker.port, keepalive=5)
    session = MqttSession(mqtt, branch=BRANCH)
    profile = CATALOGUE.get(LOCK.profile)
    device = MqttDevice(
        config=LOCK,
        profile=profile.model_copy(update={"confirm_timeout": confirm_timeout}),
        session=session,
        branch=BRANCH,
        clock=SystemClock(),
    )
    readings: list[Reading] = []
    listener = asyncio.create_task(
        Coordinator(source=device, clock=SystemClock(), emit=readings.extend).run()
    )
    assert await session.connect()
    assert await session.wait_subscribed()
    simulation = MqttSimulation([LOCK], {profile.id: profile}, mqtt)
    await simulation.start()
    alerts: list[tuple[str, str, bool]] = []
    audit: list[str] = []
    reconciler = Reconciler(
        actuators=[ACTUATOR],
        sources={LOCK.id: device},
        on_alert=lambda kind, message, active: alerts.append((kind, message, active)),
        on_audit=audit.append,
        retries=2,
        reverify=2 * STEP,
    )
    try:
        yield Lock(
            device,
            simulation.devices[LOCK.id],
            reconciler,
            alerts,
            audit,
            readings,
            start=datetime.now(UTC),
        )
    finally:
        assert not listener.done(), "the listener stopped"
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await simulation.stop()
        await session.close()


def command(value: bool) -> Command:
    now = datetime.now(UTC)
    return Command(
        device=LOCK.id,
        point="locked",
        value=value,
        reason="test",
        who="pytest",
        issued_at=now,
        expires_at=now + timedelta(minutes=1),
    )


def test_the_state_message_confirms_a_write(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        async with lock_on(mosquitto) as lock:
            sent = datetime.now(UTC)
            assert await lock.device.write(command(True)) is True
            assert lock.sim.get("locked") is True
            reported = lock.device.reported("locked")
            assert reported is not None
            assert reported[0] is True
            assert reported[1] >= sent  # the confirming message arrived after the command
            # A lock that is locked already answers a lock with its state (Zigbee2MQTT
            # publishes after every set): confirmed, as after a gateway restart.
            assert await lock.device.write(command(True)) is True
            assert lock.sim.commands == 2
            assert await lock.device.read_point("locked") is True

            # Only a report of the commanded value confirms: the lock reports its old state
            # first, then the new one, and the write returns the new one.
            lock.sim.set_ignoring(True)
            write = asyncio.create_task(lock.device.write(command(False)))
            await until(lambda: lock.sim.commands == 3, what="the third set message")
            lock.sim.publish_raw(lock.sim.topic, b'{"state": "LOCK", "lock_state": "locked"}')
            lock.sim.publish_raw(lock.sim.topic, b'{"state": "UNLOCK", "lock_state": "unlocked"}')
            assert await write is False
            assert len(lock.readings) >= 4  # every report is a reading too

            # The reconciler: confirmed by the report, re-verified from the last report.
            lock.sim.set_ignoring(False)
            assert await lock.reconcile(0) == 1
            assert lock.audit == ["staff-door.locked := True (closed)"]
            assert await lock.reconcile(2) == 0  # due, read, agrees
            assert lock.alerts == []

    asyncio.run(main())


def test_a_lock_that_never_confirms_is_retried_and_alerted(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        async with lock_on(mosquitto, confirm_timeout=0.3) as lock:
            lock.sim.set_ignoring(True)  # its motor or radio link is dead
            began = time.monotonic()
            with pytest.raises(NotConfirmed, match=r"within 0\.3 s \(last reported: nothing\)"):
                await lock.device.write(command(True))
            assert time.monotonic() - began >= 0.3
            lock.sim.set("locked", False)  # it still reports, unlocked
            await lock.heard(False)

            assert await lock.reconcile(0) == 1
            assert await lock.reconcile(1) == 1  # retried on every pass
            assert lock.raised(FAILED) == []
            assert await lock.reconcile(2) == 1  # the third attempt fails: alerted
            assert lock.raised(FAILED) == [True]
            message = next(m for k, m, _ in lock.alerts if k == FAILED)
            assert message.startswith("staff-door.locked does not follow True: ")
            assert "last reported: False" in message
            assert await lock.reconcile(3) == 1
            assert lock.raised(FAILED) == [True]  # once
            await until(lambda: lock.sim.commands == 5, what="every attempt on the set topic")
            assert lock.audit == []  # nothing was carried out
            assert lock.sim.get("locked") is False

            lock.sim.set_ignoring(False)  # repaired
            assert await lock.reconcile(4) == 1
            assert lock.sim.get("locked") is True
            assert lock.raised(FAILED) == [True, False]
            assert lock.audit == ["staff-door.locked := True (closed)"]

    asyncio.run(main())


def test_a_lock_opened_by_hand_is_locked_again_and_alerted_once(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        async with lock_on(mosquitto, confirm_timeout=0.5) as lock:
            assert await lock.reconcile(0) == 1
            assert lock.sim.get("locked") is True

            lock.sim.set("locked", False)  # opened by hand with the key
            await lock.heard(False)
            assert await lock.reconcile(1) == 0  # confirmed a step ago: not re-verified yet
            assert await lock.reconcile(2) == 1  # re-verified: drifted, locked again
            assert lock.sim.get("locked") is True
            assert lock.raised(DRIFT) == [True, False]  # raised, cleared once it followed
            assert lock.alerts[0][1] == "staff-door.locked reads False, not True: set again"
            assert lock.audit[1:] == [
                "staff-door.locked drifted: reads False, want True",
                "staff-door.locked := True (closed, re-asserted after drift)",
            ]
            assert await lock.reconcile(3) == 0
            assert await lock.reconcile(4) == 0  # re-verified: follows
            assert lock.raised(DRIFT) == [True, False]

            # Held open: the lock is unlocked again and does not take the re-assert.
            lock.sim.set_ignoring(True)
            lock.sim.set("locked", False)
            await lock.heard(False)
            for step in (6, 7, 8, 9):
                assert await lock.reconcile(step) == 1
            assert lock.raised(DRIFT) == [True, False, True]  # once for this drift
            assert lock.raised(FAILED) == [True]  # and the write, after 3 attempts
            assert sum("drifted" in line for line in lock.audit) == 2

            lock.sim.set_ignoring(False)  # let go
            assert await lock.reconcile(10) == 1
            assert lock.sim.get("locked") is True
            assert lock.raised(DRIFT) == [True, False, True, False]
            assert lock.raised(FAILED) == [True, False]

    asyncio.run(main())
