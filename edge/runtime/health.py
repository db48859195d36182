"""The gateway's health: a ``gateway`` reading every ``HEALTH_EVERY`` seconds (outbox depth,
drops, poll errors, devices down, write latency, device readings suppressed unchanged), each
device's availability (retained topic, the outbox's state for ``gateway status``, and a
``device_down`` alert), and the MQTT broker's: a session found disconnected at a health tick
raises ``mqtt_down`` until a later tick finds it connected (while the broker is away no MQTT
device is heard). It also clears ``outbox_dropped`` and ``store_lost`` once every sink has
caught up (nothing pending older than ``CAUGHT_UP``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence

from openbranch.edge.core import schema
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.reading import Reading
from openbranch.edge.runtime.coordinator import Coordinator
from openbranch.edge.runtime.journal import Journal
from openbranch.edge.runtime.publisher import StatePublisher
from openbranch.edge.runtime.supervisor import TaskState
from openbranch.edge.telemetry.outbox import Outbox, OutboxStats
from openbranch.edge.telemetry.sink import Drainer

__all__ = ["HEALTH_EVERY", "Health"]

HEALTH_EVERY = 60.0  # seconds of gateway time between health readings
CAUGHT_UP = 300.0  # seconds: a sink whose oldest pending reading is younger has caught up


class Health:
    def __init__(
        self,
        *,
        branch: str,
        clock: Clock,
        outbox: Outbox,
        coordinators: Sequence[Coordinator],
        drainers: Sequence[Drainer],
        journal: Journal,
        publisher: StatePublisher,
        record: Callable[[Sequence[Reading]], None],
        put_state: Callable[[str, str], None],
        tasks: Callable[[], Mapping[str, TaskState]] = dict,
        tick: Callable[[], None] = lambda: None,
        broker: Callable[[], bool] | None = None,
        broker_name: str = "",
        suppressed: Callable[[], int] = lambda: 0,
    ) -> None:
        """``tick`` runs with every health reading (the gateway refreshes its status file).
        ``broker()``: whether the MQTT session is connected (None: the gateway has none).
        ``suppressed()``: device readings not written because unchanged, so far."""
        self._branch = branch
        self._clock = clock
        self._outbox = outbox
        self._coordinators = coordinators
        self._drainers = drainers
        self._journal = journal
        self._publisher = publisher
        self._record = record
        self._put_state = put_state
        self._tasks = tasks
        self._tick = tick
        self._broker = broker
        self._broker_name = broker_name
        self._broker_up: bool | None = None
        self._suppressed = suppressed

    def reading(self, stats: OutboxStats) -> Reading:
        coordinators = self._coordinators
        tasks = self._tasks().values()
        return Reading(
            branch=self._branch,
            device=schema.GATEWAY_DEVICE,
            measurement=schema.GATEWAY,
            fields={
                schema.GATEWAY_OUTBOX_DEPTH.key: max(stats.depth.values(), default=0),
                schema.GATEWAY_DROPPED.key: stats.dropped,
                schema.GATEWAY_POLL_ERRORS.key: sum(
                    c.stats.failed_requests + c.stats.unreachable_polls for c in coordinators
                ),
                schema.GATEWAY_DEVICES_DOWN.key: sum(
                    1 for c in coordinators if c.available is False
                ),
                schema.GATEWAY_WRITE_LATENCY.key: max(
                    (d.stats.last_latency_ms for d in self._drainers), default=0.0
                ),
                schema.GATEWAY_TASK_RESTARTS.key: sum(t.restarts for t in tasks),
                schema.GATEWAY_TASKS_FAILING.key: sum(1 for t in tasks if t.failing),
                schema.GATEWAY_SUPPRESSED.key: self._suppressed(),
            },
            time=self._clock.now(),
        )

    async def run(self) -> None:
        while True:
            await self._clock.sleep(HEALTH_EVERY)
            stats = await asyncio.to_thread(self._outbox.stats)  # waits for a commit's lock
            health = self.reading(stats)
            self._record([health])
            self._publisher.publish_own([health])
            if self._broker is not None:
                self.on_broker(self._broker())
            for kind, message in (
                (schema.OUTBOX_DROPPED, f"{stats.dropped} readings were dropped in all"),
                (schema.STORE_LOST, "the store holds what it committed since"),
            ):
                if kind in self._journal.active and self._caught_up(stats):
                    self._journal.alert(
                        kind,
                        f"every sink has caught up; {message}",
                        severity="critical",
                        active=False,
                    )
            self._tick()

    def _caught_up(self, stats: OutboxStats) -> bool:
        now = self._clock.now().timestamp() * 1e9
        return not any(d.failing for d in self._drainers) and all(
            oldest is None or now - oldest <= CAUGHT_UP * 1e9
            for oldest in stats.oldest_pending_ns.values()
        )

    def on_broker(self, connected: bool) -> None:
        """The broker's state at a health tick: raise or clear ``mqtt_down`` on a change."""
        if connected is self._broker_up or (connected and self._broker_up is None):
            self._broker_up = connected
            return
        self._broker_up = connected
        where = f"the MQTT broker {self._broker_name}".rstrip()
        if connected:
            message = f"{where} answers again"
        else:
            message = f"{where} does not answer: MQTT devices are not heard"
        self._journal.alert(schema.MQTT_DOWN, message, severity="warning", active=not connected)

    def on_availability(self, device_id: str, available: bool) -> None:
        """A device went down or came back: retained topic, status, alert."""
        self._publisher.availability(device_id, available)
        self._put_state(
            f"availability:{device_id}",
            json.dumps({"available": available, "since": self._clock.now().isoformat()}),
        )
        kind = f"{schema.DEVICE_DOWN}:{device_id}"
        if not available:
            self._journal.alert(
                kind, f"{device_id} stopped answering", severity="warning", active=True
            )
        elif any(c.device_id == device_id and c.stats.downs for c in self._coordinators):
            self._journal.alert(
                kind, f"{device_id} answers again", severity="warning", active=False
            )
