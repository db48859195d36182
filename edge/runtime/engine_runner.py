"""The engine runner: one engine step at a time, every ``ENGINE_EVERY`` seconds and whenever a
part asks for one (an accepted command); each step decides from the devices' last values,
records what changed, and makes the devices match (the reconciler).

Steps never overlap: ``request_step()`` only wakes the loop, so a burst of commands during a
step gives one more step after it, and the reconciler's writes are never interleaved.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import datetime

from openbranch.edge.core import schema
from openbranch.edge.core.aio import cancel_and_wait
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.reading import Reading, Value
from openbranch.edge.hours.calendar import Override
from openbranch.edge.hours.engine import BranchEngine, Decision, Inputs, Occupancy, Phase
from openbranch.edge.hours.reconciler import Reconciler
from openbranch.edge.runtime.coordinator import Coordinator
from openbranch.edge.runtime.journal import Journal
from openbranch.edge.runtime.publisher import StatePublisher

__all__ = ["EMERGENCY_STATE", "ENGINE_EVERY", "OCCUPANCY_STATE", "EngineRunner"]

EMERGENCY_STATE = "emergency"  # outbox state key: {"active": bool, "since": ISO time}
OCCUPANCY_STATE = "occupancy"  # outbox state key: {device: [entered, exited, baseline]}
ENGINE_EVERY = 30.0  # seconds of gateway time between engine steps
FIRST_ANSWERS = 120.0  # seconds of gateway time the first step waits for every device


class EngineRunner:
    def __init__(
        self,
        *,
        branch: str,
        clock: Clock,
        engine: BranchEngine,
        reconciler: Reconciler,
        coordinators: Sequence[Coordinator],
        fire_alarm_device: str | None,
        overrides: Callable[[datetime], Sequence[Override]],
        journal: Journal,
        publisher: StatePublisher,
        record: Callable[[Sequence[Reading]], None],
        load: Callable[[str], str | None] = lambda _key: None,
        save: Callable[[str, str], None] = lambda _key, _value: None,
        recall: Callable[[str], tuple[int, int] | None] = lambda _device: None,
    ) -> None:
        """``load``/``save``: the outbox's state, where an emergency that no person has
        cleared yet is kept, so a restart (clean or killed) goes on in emergency mode, and
        each people counter's baseline (the daily correction). ``recall``: a counter's last
        accepted totals (entered, exited) in the store, committed with the reading itself, so
        a restart counts from what the counters last said: a counter that has not spoken since
        (an MQTT counter publishes only when someone passes) still counts the people it saw
        come in. The totals saved with the baseline, an engine step later than the reading,
        are used only when the store no longer holds the counter's readings."""
        self._branch = branch
        self._clock = clock
        self.engine = engine
        self.reconciler = reconciler
        self._coordinators = coordinators
        self._fire_device = fire_alarm_device
        self._overrides = overrides
        self._journal = journal
        self._publisher = publisher
        self._record = record
        saved = json.loads(load(OCCUPANCY_STATE) or "{}")
        self.occupancy = {}
        for c in coordinators:
            entered, exited, baseline = saved.get(c.device_id, (0, 0, 0))
            totals = recall(c.device_id)
            if totals is not None:
                entered, exited = totals
            known = totals is not None or c.device_id in saved
            self.occupancy[c.device_id] = (
                Occupancy.restored(entered, exited, baseline) if known else Occupancy()
            )
        self._saved_occupancy = {d: tuple(v) for d, v in saved.items()}
        self.last_decision: Decision | None = None
        self.steps = 0
        self._wake = asyncio.Event()
        self._save = save
        raw = load(EMERGENCY_STATE)
        if raw is not None and json.loads(raw)["active"]:
            engine.restore_emergency(datetime.fromisoformat(json.loads(raw)["since"]))
        self._emergency = engine.emergency

    def request_step(self) -> None:
        """Ask for a step as soon as the current one (if any) is over."""
        self._wake.set()

    def clear_emergency(self, who: str) -> str:
        message = self.engine.clear_emergency(who)
        self._emergency = False
        now = self._clock.now().isoformat()
        self._save(EMERGENCY_STATE, json.dumps({"active": False, "since": now}))
        return message

    def inputs(self) -> Inputs:
        """The engine's inputs from the devices' last values."""
        entered, exited = schema.OCCUPANCY_ENTERED.key, schema.OCCUPANCY_EXITED.key
        present: int | None = 0
        counters = 0
        for c in self._coordinators:
            got_in = c.last.get((schema.OCCUPANCY.name, entered))
            got_out = c.last.get((schema.OCCUPANCY.name, exited))
            if got_in is not None and got_out is not None:
                self.occupancy[c.device_id].update(int(got_in[0]), int(got_out[0]))
            if not self.occupancy[c.device_id].known:
                continue  # not a counter, or one that never answered (nor in an earlier run)
            counters += 1
            if c.available is False:
                present = None
            elif present is not None:
                present += self.occupancy[c.device_id].net  # entrances share the visitors
        fire = False
        if self._fire_device is not None:
            c = next(c for c in self._coordinators if c.device_id == self._fire_device)
            got = c.last.get((schema.ALERT.name, schema.ALERT_ACTIVE.key))
            fire = bool(got and got[0] is True)
        total = None if present is None or not counters else max(0, present)
        return Inputs(present=total, fire_alarm=fire)

    async def step(self) -> Decision:
        """One engine step: decide, record, and make the devices match."""
        now = self._clock.now()
        inputs = self.inputs()
        decision = self.engine.step(
            now, inputs, self._overrides(now), monotonic=self._clock.monotonic()
        )
        previous = self.last_decision
        if previous is None or previous.mode is not decision.mode:
            was = "start" if previous is None else previous.mode.value
            self._journal.audit("mode", f"{was} -> {decision.mode.value}")
            mode = self._own(schema.BRANCH_MODE, {schema.BRANCH_MODE_MODE.key: decision.mode.value})
            self._record([mode])
            self._publisher.publish_own([mode])
        if inputs.present is not None:  # on the gateway's state topic only
            present = self._own(schema.OCCUPANCY, {schema.OCCUPANCY_PRESENT.key: inputs.present})
            self._publisher.publish_own([present])
        for alert in decision.alerts:
            self._journal.alert(
                alert.kind, alert.message, severity=alert.severity, active=alert.active
            )
        for note in decision.notes:
            self._journal.audit("engine", note)
        for text in decision.announcements:
            self._journal.audit("announcement", text)
        if decision.phase is Phase.SECURED and (
            previous is None or previous.phase is not Phase.SECURED
        ):
            for occupancy in self.occupancy.values():
                occupancy.reset()  # closed and verified empty: the daily correction
        self._save_occupancy()
        self.last_decision = decision
        self.steps += 1
        if self.engine.emergency is not self._emergency:
            self._emergency = self.engine.emergency
            self._save(
                EMERGENCY_STATE, json.dumps({"active": self._emergency, "since": now.isoformat()})
            )
        await self.reconciler.reconcile(now, decision.desired, f"{decision.mode}/{decision.phase}")
        return decision

    def _save_occupancy(self) -> None:
        """Keep the counters' totals and baselines for the next run, when they changed."""
        now = {d: o.state for d, o in self.occupancy.items() if o.known}
        if now != self._saved_occupancy:
            self._save(OCCUPANCY_STATE, json.dumps({d: list(v) for d, v in now.items()}))
            self._saved_occupancy = now

    async def run(self) -> None:
        # First let every polled device answer once (or fail), so the engine starts from facts.
        waited = 0.0
        while waited < FIRST_ANSWERS and not all(
            c.available is not None for c in self._coordinators if c.polled
        ):
            await self._clock.sleep(2.0)
            waited += 2.0
        while True:
            self._wake.clear()
            await self.step()
            await self._sleep_or_wake(ENGINE_EVERY)

    async def _sleep_or_wake(self, seconds: float) -> None:
        """Sleep ``seconds`` of gateway time, or less when a step is requested."""
        if self._wake.is_set():
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait((sleeper, waker))

    def _own(self, measurement: schema.Measurement, fields: dict[str, Value]) -> Reading:
        return Reading(
            branch=self._branch,
            device=schema.GATEWAY_DEVICE,
            measurement=measurement,
            fields=fields,
            time=self._clock.now(),
        )
