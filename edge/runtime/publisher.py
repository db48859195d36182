"""The state publisher: each device's retained state topic and availability, and the
gateway's own state topic (branch mode, people present, health, alerts).

A device's state goes out at most once a second (``STATE_EVERY``); what arrives sooner is
merged and sent when that second is over (a timer), not with the device's next reading. The
gateway's own state is rare and goes out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from openbranch.edge.core.messaging import state_key
from openbranch.edge.core.reading import Reading
from openbranch.edge.runtime.mqtt import MqttSession

__all__ = ["STATE_EVERY", "StatePublisher"]

STATE_EVERY = 1.0  # seconds: the most often a device's retained state is published


class StatePublisher:
    def __init__(self, mqtt: MqttSession | None) -> None:
        self._mqtt = mqtt
        self._states: dict[str, dict[str, object]] = {}
        self._latest: dict[str, dict[str, Reading]] = {}
        self._published: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def publish(self, readings: Sequence[Reading], *, force: bool = False) -> None:
        """Update each device's retained state topic (at most once a second per device)."""
        if self._mqtt is None:
            return
        for r in readings:  # the latest reading per device and series; merged when sent
            self._latest.setdefault(r.device, {})[state_key(r.measurement.name, r.tags)] = r
        now = time.monotonic()
        waiting = 0.0  # the soonest a held-back device may be sent, from now
        for device, latest in self._latest.items():
            if not latest:
                continue
            since = now - self._published.get(device, 0.0)
            if not force and since < STATE_EVERY:
                waiting = min(waiting or STATE_EVERY, STATE_EVERY - since)
                continue
            self._published[device] = now
            state = self._states.setdefault(device, {})
            for key, r in latest.items():
                for name in {r.measurement.name, key}:
                    values = state.setdefault(name, {})
                    assert isinstance(values, dict)
                    values.update(r.fields)
                state["time"] = r.time.isoformat()
            latest.clear()
            self._mqtt.publish_state(device, state)
        if waiting and self._timer is None:
            with contextlib.suppress(RuntimeError):  # no running loop: the next reading sends
                self._timer = asyncio.get_running_loop().call_later(waiting, self._held)

    def publish_own(self, readings: Sequence[Reading]) -> None:
        """The gateway's own state topic: rare, so sent at once."""
        self.publish(readings, force=True)

    def availability(self, device_id: str, available: bool) -> None:
        if self._mqtt is not None:
            self._mqtt.publish_availability(device_id, available)

    def flush(self) -> None:
        """Send whatever is held back now (at stop, before the session closes)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.publish([], force=True)

    def _held(self) -> None:
        self._timer = None
        self.publish([])
