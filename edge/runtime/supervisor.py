"""The supervisor: every long-running task of the gateway runs under it, and none dies quietly.

The task tree (written down once, here; ``Gateway.run`` starts it)::

    gateway
    ├── device:<id>        one coordinator per device (poll loop, or MQTT subscriptions)
    ├── engine             the branch's day: one engine step at a time, then the reconciler
    ├── health             the gateway reading every minute
    ├── sink:<name>        one drainer per InfluxDB sink
    ├── mqtt               connecting the session (it reconnects by itself afterwards)
    ├── watchdog           systemd's WATCHDOG=1 pings, from this loop (when run by systemd)
    └── extension:<name>   e.g. Home Assistant discovery

A task that raises is logged with its traceback, counted, raises the alert
``task_failed:<name>`` (critical) and is started again after a capped, doubling backoff
(1 s to 5 min of gateway time). The alert stays raised while the task keeps failing and is
cleared once the restarted task has run ``HEALTHY_AFTER`` seconds without failing. A task that
returns normally is ``done`` and not restarted. The other tasks are never touched: a failing
engine does not stop polling, a failing device does not stop the engine.

Each task's state and restart count are in ``states()``; every change is also handed to
``on_change`` (the gateway keeps them in the outbox for ``gateway status``).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from openbranch.edge.core.clock import Clock

__all__ = ["HEALTHY_AFTER", "TASK_FAILED", "Supervisor", "TaskState"]

log = logging.getLogger(__name__)

TASK_FAILED = "task_failed"  # alert kind: "task_failed:<task name>"
BACKOFF_MIN = 1.0  # seconds of gateway time before the first restart
BACKOFF_MAX = 300.0
HEALTHY_AFTER = 60.0  # seconds a restarted task must run without failing to clear its alert

State = Literal["running", "restarting", "done", "stopped"]


@dataclass(frozen=True, slots=True)
class TaskState:
    name: str
    state: State
    restarts: int = 0
    failures: int = 0
    last_error: str = ""
    since: datetime | None = None
    failing: bool = False  # failed, and not yet run HEALTHY_AFTER seconds since (alert raised)

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "restarts": self.restarts,
            "failures": self.failures,
            "last_error": self.last_error,
            "failing": self.failing,
            "since": self.since.isoformat() if self.since else None,
        }


AlertFn = Callable[[str, str, bool], None]  # (kind, message, active)


@dataclass(slots=True)
class _Child:
    name: str
    run: Callable[[], Awaitable[object]]
    state: TaskState
    task: asyncio.Task[None] | None = None
    clear_timer: asyncio.Task[None] | None = field(default=None)


class Supervisor:
    def __init__(
        self,
        *,
        clock: Clock,
        alert: AlertFn,
        on_change: Callable[[dict[str, TaskState]], None] = lambda _: None,
        backoff_min: float = BACKOFF_MIN,
        backoff_max: float = BACKOFF_MAX,
        healthy_after: float = HEALTHY_AFTER,
    ) -> None:
        self._clock = clock
        self._alert = alert
        self._on_change = on_change
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._healthy_after = healthy_after
        self._children: dict[str, _Child] = {}

    def start(self, name: str, run: Callable[[], Awaitable[object]]) -> None:
        """Run ``run()`` as the task ``name``, restarted whenever it raises."""
        if name in self._children:
            raise ValueError(f"a task named {name!r} is already supervised")
        child = _Child(name, run, TaskState(name, "running", since=self._clock.now()))
        self._children[name] = child
        child.task = asyncio.create_task(self._keep(child), name=name)
        self._changed()

    def states(self) -> dict[str, TaskState]:
        return {name: c.state for name, c in self._children.items()}

    async def finish(self, names: Collection[str], *, within: float) -> None:
        """Wait up to ``within`` real seconds for the tasks ``names`` to return by themselves
        (e.g. drainers told to stop); then stop them."""
        tasks = [c.task for n, c in self._children.items() if n in names and c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=within)
        await self.stop(names)

    async def stop(self, names: Collection[str] | None = None) -> None:
        """Cancel the tasks ``names`` (default: all) and wait for each to end; never raises."""
        children = [c for n, c in self._children.items() if names is None or n in names]
        for child in children:
            for task in (child.task, child.clear_timer):
                if task is not None:
                    task.cancel()
        for child in children:
            for task in (child.task, child.clear_timer):
                if task is None:
                    continue
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:  # _keep catches everything; this is the last net
                    log.exception("task %s failed while stopping", child.name)
            if child.state.state != "done":
                child.state = replace(child.state, state="stopped", since=self._clock.now())
        self._changed()

    async def _keep(self, child: _Child) -> None:
        delay = self._backoff_min
        while True:
            try:
                await child.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("task %s failed", child.name)
                self._failed(child, exc, delay)
                await self._clock.sleep(delay)
                delay = min(delay * 2, self._backoff_max)
                child.state = replace(
                    child.state,
                    state="running",
                    restarts=child.state.restarts + 1,
                    since=self._clock.now(),
                )
                self._changed()
                log.warning("task %s restarted (restart %d)", child.name, child.state.restarts)
                self._watch_recovery(child)
                continue
            child.state = replace(child.state, state="done", since=self._clock.now())
            self._changed()
            return

    def _failed(self, child: _Child, exc: Exception, delay: float) -> None:
        if child.clear_timer is not None:
            child.clear_timer.cancel()
            child.clear_timer = None
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
        error = f"{type(exc).__name__}: {exc}{at}"
        child.state = replace(
            child.state,
            state="restarting",
            failures=child.state.failures + 1,
            last_error=error,
            failing=True,
            since=self._clock.now(),
        )
        self._changed()
        message = (
            f"task {child.name} failed ({error}); failure {child.state.failures}, "
            f"restarting in {delay:g} s"
        )
        self._alert(f"{TASK_FAILED}:{child.name}", message, True)

    def _watch_recovery(self, child: _Child) -> None:
        """Clear the task's alert once it has run ``healthy_after`` seconds without failing."""

        async def clear() -> None:
            await self._clock.sleep(self._healthy_after)
            if child.state.failing and child.state.state == "running":
                child.state = replace(child.state, failing=False)
                self._changed()
                self._alert(
                    f"{TASK_FAILED}:{child.name}",
                    f"task {child.name} has run {self._healthy_after:g} s without failing "
                    f"after {child.state.restarts} restarts",
                    False,
                )

        child.clear_timer = asyncio.create_task(clear(), name=f"{child.name}:recovery")

    def _changed(self) -> None:
        try:
            self._on_change(self.states())
        except Exception:  # a status write must never take a task down; it is logged
            log.exception("could not record the task states")
