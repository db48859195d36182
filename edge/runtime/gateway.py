"""The gateway run loop: build every device from the config, plan once, then only do I/O.

Readings go from each device's coordinator into the outbox, committed before anything else
happens to them; one drainer per configured sink forwards them. Alerts and the gateway's own
health are readings too, and travel the same way (alerts as audit entries, never dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from openbranch.edge.core import schema
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.messaging import state_key
from openbranch.edge.core.reading import Reading
from openbranch.edge.core.registry import (
    BuildContext,
    Extension,
    ExtensionContext,
    Registry,
    load_extensions,
)
from openbranch.edge.core.schedule import OpeningHours
from openbranch.edge.hours.calendar import Calendar, Override
from openbranch.edge.hours.control import ControlError, Verifier
from openbranch.edge.hours.engine import BranchEngine, Decision, Inputs, Occupancy, Phase
from openbranch.edge.hours.reconciler import Reconciler
from openbranch.edge.runtime.coordinator import Coordinator
from openbranch.edge.runtime.mqtt import MqttSession
from openbranch.edge.telemetry.energy import DEFAULT_MAX_GAP, EnergyLedger
from openbranch.edge.telemetry.outbox import Outbox
from openbranch.edge.telemetry.sink import Drainer, make_writer, sink_name

__all__ = ["Gateway", "open_outbox"]

log = logging.getLogger(__name__)

HEALTH_EVERY = 60.0  # seconds of gateway time between health readings
ENGINE_EVERY = 30.0  # seconds of gateway time between engine steps
COMMIT_EVERY = 0.05  # real seconds a reading may wait for its commit
COMMIT_MAX = 5000  # readings that trigger a commit at once


def open_outbox(config: GatewayConfig, path: Path | None = None, **kw: object) -> Outbox:
    return Outbox(
        path or config.store.path,
        max_bytes=config.store.max_bytes,
        sinks=[sink_name(s) for s in config.sinks],
        **kw,  # type: ignore[arg-type]
    )


def energy_max_gaps(config: GatewayConfig) -> dict[str, timedelta]:
    """Per polled device, the longest interval between two energy readings that is still not
    a gap: three of its longest poll intervals, and never less than the ledger's default (a
    meter polled every 10 minutes must not have every hour flagged interpolated)."""
    gaps = {}
    for device in config.devices:
        if device.poll:
            longest = timedelta(seconds=max(device.poll.values()))
            gaps[device.id] = max(DEFAULT_MAX_GAP, 3 * longest)
    return gaps


STATE_EVERY = 1.0  # seconds: the most often a device's retained state is published


class Gateway:
    def __init__(
        self,
        *,
        config: GatewayConfig,
        registry: Registry,
        clock: Clock,
        outbox: Outbox,
        drainers: Sequence[Drainer] | None = None,
        extensions: Sequence[Extension] | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self._clock = clock
        self.mqtt = MqttSession(config.mqtt, branch=config.branch.id) if config.mqtt else None
        context = BuildContext(branch=config.branch.id, clock=clock, mqtt=self.mqtt)
        self.coordinators = [
            Coordinator(
                source=registry.build(device, context),
                clock=clock,
                emit=self._accept,
                on_availability=self._availability,
            )
            for device in config.devices
        ]
        if drainers is None:
            drainers = [
                Drainer(
                    outbox=outbox,
                    writer=make_writer(sink),
                    batch_size=sink.batch_size,
                    flush_interval=sink.flush_interval,
                    on_alert=self._sink_alert,
                )
                for sink in config.sinks
            ]
        self.drainers = list(drainers)
        self.accepted = 0
        self._pending: list[Reading] = []
        self._commit_timer: asyncio.TimerHandle | None = None
        self._states: dict[str, dict[str, object]] = {}
        self._latest: dict[str, dict[str, Reading]] = {}
        self._published: dict[str, float] = {}
        self._state_timer: asyncio.TimerHandle | None = None
        self.energy = EnergyLedger(
            branch=config.branch.id, load=outbox.get_state, max_gaps=energy_max_gaps(config)
        )
        self.engine = BranchEngine(
            calendar=Calendar(config.hours or OpeningHours(), config.branch.timezone),
            policy=config.closing,
        )
        self.reconciler = Reconciler(
            actuators=config.actuators,
            sources={c.device_id: c.source for c in self.coordinators},
            on_alert=lambda kind, message, active: self.alert(
                kind, message, severity="warning", active=active
            ),
            on_audit=lambda message: self.audit("command", message),
        )
        self.occupancy = {c.device_id: Occupancy() for c in self.coordinators}
        self.overrides: list[Override] = []
        self.last_decision: Decision | None = None
        self.listeners: list[Callable[[str, str], None]] = []  # (kind, message), e.g. the demo
        self.verifier: Verifier | None = None
        self._engine_task: asyncio.Task[Decision] | None = None
        if config.control is not None and self.mqtt is not None:
            self.verifier = Verifier(
                key=config.control.key.resolve().encode(),
                load=outbox.get_state,
                save=outbox.set_state,
            )
            self.mqtt.subscribe(
                f"{self.mqtt.topics.prefix}/{config.branch.id}/control", self._control
            )
        if outbox.on_drop is None:
            outbox.on_drop = self.on_drop
        if extensions is None:
            extensions = load_extensions(
                ExtensionContext(config=config, mqtt=self.mqtt, clock=clock)
            )
        self.extensions = list(extensions)

    def _accept(self, readings: Sequence[Reading]) -> None:
        """Queue readings for the next commit (at most ``COMMIT_EVERY`` seconds away)."""
        self._pending.extend(readings)
        if len(self._pending) >= COMMIT_MAX:
            self.commit()
        elif self._commit_timer is None:
            loop = asyncio.get_running_loop()
            self._commit_timer = loop.call_later(COMMIT_EVERY, self.commit)

    def commit(self) -> None:
        """Commit queued readings, with meter totals, closed hours and the accounts' state, in
        one transaction; from then on they are accepted and never silently dropped."""
        if self._commit_timer is not None:
            self._commit_timer.cancel()
            self._commit_timer = None
        readings, self._pending = self._pending, []
        if not readings:
            return
        out, state = self.energy.process(readings)
        self.outbox.append(out, state=state)
        self.accepted += len(readings)
        if self.mqtt is not None:
            self._publish_states(out)

    def alert(self, kind: str, message: str, *, severity: str, active: bool) -> None:
        """Raise or clear an alert: logged, and committed as an audit entry."""
        for listener in self.listeners:
            listener(f"alert {kind}", f"{'RAISED' if active else 'cleared'}: {message}")
        (log.warning if active else log.info)(
            "alert %s %s: %s", kind, "raised" if active else "cleared", message
        )
        reading = Reading(
            branch=self.config.branch.id,
            device=schema.GATEWAY_DEVICE,
            measurement=schema.ALERT,
            fields={
                schema.ALERT_MESSAGE.key: message,
                schema.ALERT_SEVERITY.key: severity,
                schema.ALERT_ACTIVE.key: active,
            },
            tags={schema.Tag.KIND.value: kind},
            time=self._clock.now(),
        )
        self.outbox.append([reading], audit=True)
        self._publish_own([reading])

    def audit(self, kind: str, message: str) -> None:
        """Record a decision of the engine; audit entries are never dropped."""
        log.info("audit %s: %s", kind, message)
        for listener in self.listeners:
            listener(kind, message)
        reading = Reading(
            branch=self.config.branch.id,
            device=schema.GATEWAY_DEVICE,
            measurement=schema.AUDIT,
            fields={schema.AUDIT_MESSAGE.key: message},
            tags={schema.Tag.KIND.value: kind},
            time=self._clock.now(),
        )
        self.outbox.append([reading], audit=True)

    def inputs(self) -> Inputs:
        """The engine's inputs from the devices' last values."""
        entered, exited = schema.OCCUPANCY_ENTERED.key, schema.OCCUPANCY_EXITED.key
        present: int | None = 0
        counters = 0
        for c in self.coordinators:
            got_in = c.last.get((schema.OCCUPANCY.name, entered))
            got_out = c.last.get((schema.OCCUPANCY.name, exited))
            if got_in is None or got_out is None:
                continue
            counters += 1
            self.occupancy[c.device_id].update(int(got_in[0]), int(got_out[0]))
            if c.available is False:
                present = None
            elif present is not None:
                present += self.occupancy[c.device_id].net  # entrances share the visitors
        fire = False
        fire_device = self.config.safety.fire_alarm_device
        if fire_device is not None:
            c = next(c for c in self.coordinators if c.device_id == fire_device)
            got = c.last.get((schema.ALERT.name, schema.ALERT_ACTIVE.key))
            fire = bool(got and got[0] is True)
        total = None if present is None or not counters else max(0, present)
        return Inputs(present=total, fire_alarm=fire)

    async def step_engine(self) -> Decision:
        """One engine step: decide, record, and make the devices match."""
        now = self._clock.now()
        self.overrides = [o for o in self.overrides if o.end > now]
        inputs = self.inputs()
        decision = self.engine.step(now, inputs, self.overrides)
        previous = self.last_decision
        if previous is None or previous.mode is not decision.mode:
            was = "start" if previous is None else previous.mode.value
            self.audit("mode", f"{was} -> {decision.mode.value}")
            mode = Reading(
                branch=self.config.branch.id,
                device=schema.GATEWAY_DEVICE,
                measurement=schema.BRANCH_MODE,
                fields={schema.BRANCH_MODE_MODE.key: decision.mode.value},
                time=now,
            )
            self.outbox.append([mode])
            self._publish_own([mode])
        if inputs.present is not None:  # on the gateway's state topic only
            self._publish_own(
                [
                    Reading(
                        branch=self.config.branch.id,
                        device=schema.GATEWAY_DEVICE,
                        measurement=schema.OCCUPANCY,
                        fields={schema.OCCUPANCY_PRESENT.key: inputs.present},
                        time=now,
                    )
                ]
            )
        for alert in decision.alerts:
            self.alert(alert.kind, alert.message, severity=alert.severity, active=alert.active)
        for note in decision.notes:
            self.audit("engine", note)
        for text in decision.announcements:
            self.audit("announcement", text)
        if decision.phase is Phase.SECURED and (
            previous is None or previous.phase is not Phase.SECURED
        ):
            for occupancy in self.occupancy.values():
                occupancy.reset()  # closed and verified empty: the daily correction
        self.last_decision = decision
        await self.reconciler.reconcile(now, decision.desired, f"{decision.mode}/{decision.phase}")
        return decision

    def _control(self, topic: str, payload: bytes, retained: bool) -> None:
        """A control message: verified, audited either way, applied when valid."""
        assert self.verifier is not None
        try:
            message = self.verifier.check(payload, retained=retained, now=self._clock.now())
        except ControlError as exc:
            self.audit("command_rejected", f"{topic}: {exc}")
            return
        if message.override is not None:
            self.overrides.append(message.override)
        elif message.action == "clear_emergency":
            self.audit("engine", self.engine.clear_emergency(message.who))
        elif message.action == "cancel_overrides":
            self.overrides.clear()
        until = f" until {message.override.end.isoformat()}" if message.override else ""
        mode = f" {message.override.mode}" if message.override else ""
        self.audit(
            "command_accepted",
            f"{message.action}{mode}{until} by {message.who} ({message.reason}), id {message.id}",
        )
        self._engine_task = asyncio.get_running_loop().create_task(self.step_engine())

    async def _run_engine(self) -> None:
        # First let every polled device answer once (or fail), so the engine starts from facts.
        for _ in range(60):
            if all(c.available is not None for c in self.coordinators if c.polled):
                break
            await self._clock.sleep(2.0)
        while True:
            await self.step_engine()
            await self._clock.sleep(ENGINE_EVERY)

    def _sink_alert(self, kind: str, message: str, active: bool) -> None:
        self.alert(
            kind,
            message,
            severity="critical" if "unauthorized" in kind else "warning",
            active=active,
        )

    def on_drop(self, count: int, reason: str) -> None:
        self.alert(
            "outbox_dropped",
            f"dropped {count} oldest readings: {reason}",
            severity="critical",
            active=True,
        )

    def _publish_states(self, readings: Sequence[Reading], *, force: bool = False) -> None:
        """Update each device's retained state topic, at most once a second per device; what
        arrives sooner goes out when that second is over (a timer), not with the next reading."""
        assert self.mqtt is not None
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
            self.mqtt.publish_state(device, state)
        if waiting and self._state_timer is None:
            with contextlib.suppress(RuntimeError):  # no running loop: the next reading sends
                self._state_timer = asyncio.get_running_loop().call_later(
                    waiting, self._held_states
                )

    def _held_states(self) -> None:
        self._state_timer = None
        if self.mqtt is not None:
            self._publish_states([])

    def _publish_own(self, readings: Sequence[Reading]) -> None:
        """The gateway's own state topic (branch mode, people present, alerts, health): rare,
        so sent at once."""
        if self.mqtt is not None:
            self._publish_states(readings, force=True)

    def _availability(self, device_id: str, available: bool) -> None:
        if self.mqtt is not None:
            self.mqtt.publish_availability(device_id, available)
        self.outbox.set_state(
            f"availability:{device_id}",
            json.dumps({"available": available, "since": self._clock.now().isoformat()}),
        )
        if not available:
            self.alert(
                f"{schema.DEVICE_DOWN}:{device_id}",
                f"{device_id} stopped answering",
                severity="warning",
                active=True,
            )
        elif any(c.device_id == device_id and c.stats.downs for c in self.coordinators):
            self.alert(
                f"{schema.DEVICE_DOWN}:{device_id}",
                f"{device_id} answers again",
                severity="warning",
                active=False,
            )

    def health(self) -> Reading:
        stats = self.outbox.stats()
        return Reading(
            branch=self.config.branch.id,
            device=schema.GATEWAY_DEVICE,
            measurement=schema.GATEWAY,
            fields={
                schema.GATEWAY_OUTBOX_DEPTH.key: max(stats.depth.values(), default=0),
                schema.GATEWAY_DROPPED.key: stats.dropped,
                schema.GATEWAY_POLL_ERRORS.key: sum(
                    c.stats.failed_requests + c.stats.unreachable_polls for c in self.coordinators
                ),
                schema.GATEWAY_DEVICES_DOWN.key: sum(
                    1 for c in self.coordinators if c.available is False
                ),
                schema.GATEWAY_WRITE_LATENCY.key: max(
                    (d.stats.last_latency_ms for d in self.drainers), default=0.0
                ),
            },
            time=self._clock.now(),
        )

    async def _report_health(self) -> None:
        while True:
            await self._clock.sleep(HEALTH_EVERY)
            health = self.health()
            self.outbox.append([health])
            self._publish_own([health])

    async def _connect_mqtt(self) -> None:
        assert self.mqtt is not None
        await self.mqtt.connect()

    def plan(self) -> list[str]:
        return [c.source.describe_plan() for c in self.coordinators]

    async def run(self, stop: asyncio.Event, *, drain_grace: float = 2.0) -> None:
        """Run until ``stop`` is set: polls stop first, the last readings are committed, the
        drainers get up to ``drain_grace`` seconds to deliver them (not while a database is
        failing), then in-flight writes finish; what is left stays in the outbox."""
        for line in self.plan():
            log.info("plan %s", line)
        drain_stop = asyncio.Event()
        drainers = [asyncio.create_task(d.run(drain_stop), name=d.name) for d in self.drainers]
        tasks = [asyncio.create_task(c.run(), name=c.device_id) for c in self.coordinators]
        tasks.append(asyncio.create_task(self._report_health(), name="health"))
        if self.config.hours is not None or self.config.actuators:
            tasks.append(asyncio.create_task(self._run_engine(), name="engine"))
        if self.mqtt is not None:  # polling and committing never wait for the broker
            tasks.append(asyncio.create_task(self._connect_mqtt(), name="mqtt"))
        tasks += [asyncio.create_task(_run_extension(e), name=e.name) for e in self.extensions]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self._state_timer is not None:
                self._state_timer.cancel()
                self._state_timer = None
            if self.mqtt is not None:  # no more pushed messages after the last commit
                self._publish_states([], force=True)
                await self.mqtt.close()
            self.commit()
            deadline = time.monotonic() + drain_grace
            while time.monotonic() < deadline and any(  # noqa: ASYNC110 - polls the outbox
                self.outbox.depth(d.name) and not d.failing for d in self.drainers
            ):
                await asyncio.sleep(0.05)
            drain_stop.set()
            await asyncio.gather(*drainers, return_exceptions=True)
            for coordinator in self.coordinators:
                await coordinator.source.close()
            for drainer in self.drainers:
                drainer.writer.close()


async def _run_extension(extension: Extension) -> None:
    """An extension that fails is logged; the gateway goes on polling and committing."""
    try:
        await extension.run()
    except Exception:
        log.exception("extension %s failed; the gateway goes on without it", extension.name)
