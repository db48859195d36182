"""The gateway run loop: build every device from the config, plan once, then only poll.

Readings go from each device's coordinator into the local store, committed before anything
else happens to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from edge.clock import Clock
from edge.config import GatewayConfig
from edge.coordinator import Coordinator
from edge.reading import Reading
from edge.registry import BuildContext, Registry
from edge.store import LocalStore

__all__ = ["Gateway"]

log = logging.getLogger(__name__)


class Gateway:
    def __init__(
        self, *, config: GatewayConfig, registry: Registry, clock: Clock, store: LocalStore
    ) -> None:
        self.config = config
        self.store = store
        self._clock = clock
        context = BuildContext(branch=config.branch.id, clock=clock)
        self.coordinators = [
            Coordinator(source=registry.build(device, context), clock=clock, emit=self._accept)
            for device in config.devices
        ]
        self.accepted = 0

    def _accept(self, readings: Sequence[Reading]) -> None:
        self.store.append(readings)
        self.accepted += len(readings)

    def plan(self) -> list[str]:
        return [c.source.describe_plan() for c in self.coordinators]

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every device until ``stop`` is set; then stop polling and close the devices."""
        for line in self.plan():
            log.info("plan %s", line)
        tasks = [asyncio.create_task(c.run(), name=c.device_id) for c in self.coordinators]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for coordinator in self.coordinators:
                await coordinator.source.close()
