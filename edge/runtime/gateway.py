"""The gateway: builds every part from the config, plans once, then the parts only do I/O.

Readings go from each device's coordinator through the committer into the outbox, committed
before anything else happens to them; one drainer per configured sink forwards them. Alerts
and the gateway's own health are readings too, and travel the same way (alerts as audit
entries, never dropped). Each part is a module of this package with one job; this one wires.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from openbranch.edge.core import schema
from openbranch.edge.core.admission import LibrarySystem, OfflineAllowList
from openbranch.edge.core.clock import Clock, clock_offset
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.device import deadbands_of
from openbranch.edge.core.imported import ImportedHours, effective_hours
from openbranch.edge.core.privacy import pseudonym as card_pseudonym
from openbranch.edge.core.reading import Reading
from openbranch.edge.core.registry import (
    BuildContext,
    Extension,
    ExtensionContext,
    Registry,
    load_extensions,
)
from openbranch.edge.core.schedule import OpeningHours
from openbranch.edge.hours.calendar import Calendar
from openbranch.edge.hours.control import Verifier
from openbranch.edge.hours.engine import BranchEngine
from openbranch.edge.hours.reconciler import Reconciler
from openbranch.edge.hours.waste import WasteDetector, closed_by
from openbranch.edge.runtime.allowlist import AllowList, entry_key, purge_entry_records
from openbranch.edge.runtime.committer import STORE_FAILED, Committer
from openbranch.edge.runtime.coordinator import Coordinator
from openbranch.edge.runtime.desk import ControlDesk, Overrides
from openbranch.edge.runtime.engine_runner import EngineRunner
from openbranch.edge.runtime.entry import (
    EntryDesk,
    branch_view,
    card_readers,
    mode_by_calendar,
)
from openbranch.edge.runtime.health import Health
from openbranch.edge.runtime.hours_watch import HoursWatch
from openbranch.edge.runtime.journal import Journal
from openbranch.edge.runtime.memory import release_free_memory
from openbranch.edge.runtime.mqtt import MqttSession
from openbranch.edge.runtime.publisher import StatePublisher
from openbranch.edge.runtime.statusfile import StatusFile
from openbranch.edge.runtime.supervisor import Supervisor, TaskState
from openbranch.edge.runtime.waste_watch import WasteWatch
from openbranch.edge.runtime.watchdog import Watchdog
from openbranch.edge.telemetry.changes import ChangeFilter
from openbranch.edge.telemetry.energy import DEFAULT_MAX_GAP, EnergyLedger, energy_rollovers
from openbranch.edge.telemetry.outbox import Outbox
from openbranch.edge.telemetry.sink import Drainer, make_writer, sink_name

__all__ = ["UNRECOVERED", "Gateway", "open_outbox", "store_lost_message"]

log = logging.getLogger(__name__)

ALERTS_STATE = "alerts"  # outbox state: the alerts raised (kind -> message), as JSON
UNRECOVERED = "are lost"  # in a store_lost alert's message only when some entries are gone
DRAIN_STOP_WAIT = 10.0  # real seconds the drainers get to finish a write in flight at stop


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


def store_lost_message(first: int, last: int, recovered: int) -> str:
    """The ``store_lost`` alert's message: the store lost entries ``first..last`` it had
    committed, and ``recovered`` of them were committed again from memory."""
    count = last - first + 1
    fate = (
        f"all {count} committed again from memory"
        if recovered == count
        else f"{recovered} of {count} committed again from memory, the other"
        f" {count - recovered} {UNRECOVERED} (the sinks may hold them)"
    )
    return (
        f"the local store lost entries {first}..{last} it had committed (its file system or"
        f" disk lost written data): {fate}; the sinks are sent them again"
    )


class Gateway:
    """Builds the gateway's parts from the config and runs them; it does no work of its own.

    The parts: one ``Coordinator`` per device; the ``Committer`` (the one path to the outbox);
    the ``Journal`` (alerts and audit); the ``StatePublisher`` (retained MQTT state); the
    ``ControlDesk`` (signed commands); the ``EngineRunner`` (the branch's day, one step at a
    time); ``Health``; one ``Drainer`` per sink; the extensions.
    """

    def __init__(
        self,
        *,
        config: GatewayConfig,
        registry: Registry,
        clock: Clock,
        outbox: Outbox,
        drainers: Sequence[Drainer] | None = None,
        extensions: Sequence[Extension] | None = None,
        library_system: LibrarySystem | None = None,
        allow_list: OfflineAllowList | None = None,
        pseudonym: Callable[[str], str] | None = None,
    ) -> None:
        """``library_system``: the client the entry desk asks (default: built by the registry
        from ``config.library_system``); ``allow_list``, ``pseudonym``: the offline allow-list
        and the card pseudonym of the entry desk's audit."""
        branch = config.branch.id
        self.config = config
        self.outbox = outbox
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        # QoS 1 messages are acknowledged to the broker only once committed (the committer).
        self.mqtt = (
            MqttSession(config.mqtt, branch=branch, manual_ack=True) if config.mqtt else None
        )
        self.publisher = StatePublisher(self.mqtt)
        context = BuildContext(branch=branch, clock=clock, mqtt=self.mqtt)
        sources = [registry.build(device, context) for device in config.devices]
        self.committer = Committer(
            outbox=outbox,
            energy=functools.partial(
                EnergyLedger,
                branch=branch,
                load=outbox.get_state,
                max_gaps=energy_max_gaps(config),
                rollovers=energy_rollovers(sources),
            ),
            on_committed=self._committed,
            on_failure=self._store_alert,
            on_pressure=self._hold_back,
            checkpoint=self._delivered,
            on_durable=self._acknowledge,
            clock_offset=functools.partial(clock_offset, clock),
            changes=ChangeFilter(  # report by exception (decision 104)
                heartbeat=config.store.heartbeat,
                deadbands={s.device_id: deadbands_of(s) for s in sources},
            ),
        )
        self.journal = Journal(
            branch=branch,
            clock=clock,
            record=lambda entries: self.committer.record(entries, audit=True),
            publish_own=self.publisher.publish_own,
            on_active=self._alerts_changed,
        )
        if drainers is None:
            drainers = [
                Drainer(
                    outbox=outbox,
                    writer=make_writer(sink),
                    batch_size=sink.batch_size,
                    flush_interval=sink.flush_interval,
                    max_rate=sink.max_rate,
                    on_alert=functools.partial(self._sink_alert, sink_name(sink)),
                )
                for sink in config.sinks
            ]
        self.drainers = list(drainers)
        self.status_file = StatusFile(outbox.path)
        self.watchdog = Watchdog()  # systemd's READY=1 and WATCHDOG=1, when run by systemd
        self.tasks = Supervisor(clock=clock, alert=self._task_alert, on_change=self._task_states)
        self.coordinators: list[Coordinator] = []  # filled below, once health can watch them
        self.health = Health(
            branch=branch,
            clock=clock,
            outbox=outbox,
            coordinators=self.coordinators,
            drainers=self.drainers,
            journal=self.journal,
            publisher=self.publisher,
            record=self.committer.record,
            put_state=self.committer.put_state,
            tasks=self.tasks.states,
            tick=self._health_tick,
            broker=None if self.mqtt is None else self._broker_connected,
            broker_name="" if self.mqtt is None else self.mqtt.address,
            suppressed=lambda: self.committer.changes.suppressed_total,
        )
        self.coordinators += [
            Coordinator(
                source=source,
                clock=clock,
                emit=self.committer.accept,
                on_availability=self.health.on_availability,
                hold=lambda: self.committer.holding_back,
            )
            for source in sources
        ]
        self.overrides = Overrides(load=outbox.get_state, save=self.committer.put_state)
        self.waste = (  # closed hours judged as they are committed (decision 86)
            None
            if config.hours is None
            else WasteWatch(
                detector=WasteDetector(
                    branch=branch,
                    closed=self._closed_all_of,  # the engine's calendar: imported hours too
                    load=outbox.get_state,
                    tz=config.branch.timezone,
                ),
                journal=self.journal,
                record=self.committer.record,
                put_state=self.committer.put_state,
            )
        )
        self.engine = EngineRunner(
            branch=branch,
            clock=clock,
            engine=BranchEngine(
                calendar=Calendar(config.hours or OpeningHours(), config.branch.timezone),
                policy=config.closing,
            ),
            reconciler=Reconciler(
                actuators=config.actuators,
                sources={c.device_id: c.source for c in self.coordinators},
                on_alert=lambda kind, message, active: self.journal.alert(
                    kind, message, severity="warning", active=active
                ),
                on_audit=lambda message: self.journal.audit("command", message),
            ),
            coordinators=self.coordinators,
            fire_alarm_device=config.safety.fire_alarm_device,
            overrides=self.overrides.active,
            journal=self.journal,
            publisher=self.publisher,
            record=self.committer.record,
            load=outbox.get_state,
            save=self.committer.put_state,
            recall=functools.partial(_counter_totals, outbox),
        )
        self.hours_watch = (  # hours imported from the website (decision 75)
            None
            if config.website_hours is None
            else HoursWatch(
                website=config.website_hours,
                clock=clock,
                journal=self.journal,
                on_hours=self._imported_hours,
                load=outbox.get_state,
                save=self.committer.put_state,
            )
        )
        if self.hours_watch is not None:  # the engine's first step already decides by them
            self._imported_hours(self.hours_watch.read())
        self.desk = ControlDesk(
            verifier=None
            if config.control is None
            else Verifier(
                key=config.control.key.resolve().encode(),
                load=outbox.get_state,
                save=outbox.set_state,
            ),
            overrides=self.overrides,
            clock=clock,
            journal=self.journal,
            clear_emergency=self.engine.clear_emergency,
            request_step=self.engine.request_step,
        )
        if config.control is not None and self.mqtt is not None:
            self.mqtt.subscribe(self.mqtt.topics.control, self.desk.on_message)
        if library_system is None and config.library_system is not None:
            library_system = registry.library_system(config.library_system)
        self.library_system = library_system
        self.allow_list: AllowList | None = None  # the gateway's own, closed at the stop
        if config.entry is not None and pseudonym is None:  # the gateway's own key (decision 80)
            key = entry_key(config.store.path)
            pseudonym = functools.partial(card_pseudonym, key)
        if (
            config.entry is not None
            and allow_list is None
            and config.entry.offline.policy == "recently_admitted"
        ):
            allow_list = self.allow_list = AllowList.beside(
                config.store.path, days=config.entry.offline.days, clock=clock
            )
        self.entry = (  # self-service entry (issue 15)
            None
            if config.entry is None
            else EntryDesk(
                branch=branch,
                config=config.entry,
                readers=card_readers(config.entry, {s.device_id: s for s in sources}),
                doors={c.device_id: c.source for c in self.coordinators},
                library=library_system,
                allow_list=allow_list,
                pseudonym=pseudonym or _no_card,
                housekeeping=functools.partial(self._keep_house, config.entry.retention_days),
                view=branch_view(engine=self.engine, overrides=self.overrides.active, clock=clock),
                mode_at=mode_by_calendar(engine=self.engine, overrides=self.overrides.active),
                clock=clock,
                journal=self.journal,
                record=self.committer.record,
                load=outbox.get_state,
                save=self.committer.put_state,
                occupancy_cap=config.closing.occupancy_cap,
            )
        )
        if outbox.on_drop is None:
            outbox.on_drop = self._on_drop
        if outbox.on_lost is None:
            outbox.on_lost = self._on_lost
        if extensions is None:
            extensions = load_extensions(
                ExtensionContext(
                    config=config,
                    mqtt=self.mqtt,
                    clock=clock,
                    on_alert=self.journal.raised.append,
                )
            )
        self.extensions = list(extensions)

    def _committed(self, readings: Sequence[Reading]) -> None:
        self.publisher.publish(readings)
        if self.waste is not None:
            self.waste.on_committed(readings)
        if self.entry is not None:
            self.entry.observe(readings)  # the people counters, for tailgating

    def _closed_all_of(self, start: datetime, end: datetime) -> bool:
        """Closed for all of [start, end), by the calendar the engine decides by now."""
        return closed_by(self.engine.engine.calendar, self.overrides.active)(start, end)

    def _imported_hours(self, imported: ImportedHours | None) -> None:
        """Hours imported from the website (``openbranch hours apply``) in force: the engine
        decides by the config's hours with them laid in, from its next step, asked for now."""
        hours = effective_hours(self.config.hours, imported)
        self.engine.engine.calendar = Calendar(hours, self.config.branch.timezone)
        self.engine.request_step()

    def _sink_alert(self, sink: str, kind: str, message: str, active: bool) -> None:
        """One alert per sink (``sink_down:<sink>``): a sink that writes again must not
        clear the alert of another that is still down."""
        severity = "critical" if "unauthorized" in kind else "warning"
        self.journal.alert(f"{kind}:{sink}", message, severity=severity, active=active)

    def _on_drop(self, count: int, reason: str) -> None:
        """The bound dropped telemetry (on the committer's writer thread)."""
        self._outbox_alert(schema.OUTBOX_DROPPED, f"dropped {count} oldest readings: {reason}")

    def _on_lost(self, first: int, last: int, recovered: int) -> None:
        """The store lost committed entries (on the writer thread or a drainer's)."""
        self._outbox_alert(schema.STORE_LOST, store_lost_message(first, last, recovered))

    def _outbox_alert(self, kind: str, message: str) -> None:
        alert = functools.partial(
            self.journal.alert, kind, message, severity="critical", active=True
        )
        if self._loop is None:
            alert()
        else:
            self._loop.call_soon_threadsafe(alert)

    def _broker_connected(self) -> bool:
        return self.mqtt is not None and self.mqtt.connected

    def _delivered(self) -> int:
        return 0 if self.mqtt is None else self.mqtt.delivered

    def _acknowledge(self, mark: int) -> None:
        """Every QoS 1 message handed over up to ``mark`` is committed: tell the broker."""
        if self.mqtt is not None:
            self.mqtt.ack_through(mark)

    def _store_alert(self, message: str, active: bool) -> None:
        self.journal.alert(STORE_FAILED, message, severity="critical", active=active)
        self.watchdog.status(message)  # what `systemctl status` shows

    def _hold_back(self, hold: bool) -> None:
        """The store cannot keep up: skip polls (the coordinators ask) and stop reading MQTT,
        so unacknowledged messages wait at the broker."""
        if self.mqtt is not None:
            self.mqtt.hold_back(hold)

    def plan(self) -> list[str]:
        return [c.source.describe_plan() for c in self.coordinators]

    def _task_states(self, _states: Mapping[str, TaskState]) -> None:
        self._write_status()

    def _alerts_changed(self, active: Mapping[str, str]) -> None:
        """Keep the alerts raised in the store too, so that the next run can clear what this
        one leaves raised (``_clear_left_alerts``), and show them in the status file."""
        self.committer.put_state(ALERTS_STATE, json.dumps(dict(active)))
        self._write_status()

    def _clear_left_alerts(self) -> None:
        """Clear the alerts a previous run left raised (it was stopped or killed with them
        raised): the part that sees a fault raises its alert again while it is still true;
        otherwise the alert table would show it raised for ever."""
        raw = self.outbox.get_state(ALERTS_STATE)
        left: dict[str, str] = json.loads(raw) if raw else {}
        for kind, message in left.items():
            if kind not in self.journal.active:
                self.journal.alert(
                    kind,
                    f"cleared at the start: the previous run left it raised ({message}); "
                    "raised again if it is still true",
                    severity="info",
                    active=False,
                )
        if left:
            self.committer.put_state(ALERTS_STATE, json.dumps(dict(self.journal.active)))

    def _health_tick(self) -> None:
        """Every health reading: the status file, and the C heap's free pages given back
        (``edge/runtime/memory.py``: RSS stays what the gateway holds)."""
        self._write_status()
        release_free_memory()

    def _write_status(self) -> None:
        """What ``gateway status`` (another process) shows of this one, in the status file
        beside the store (it stays writable on a full disk)."""
        self.status_file.write(
            {
                "updated": self._clock.now().isoformat(),
                "pid": os.getpid(),
                "tasks": {name: t.as_dict() for name, t in self.tasks.states().items()},
                "alerts": dict(self.journal.active),
                "control_refused": dict(self.desk.refused_by),
                "store": {
                    "failing": self.committer.stats.failing,
                    "last_error": self.committer.stats.last_error,
                    "waiting": self.committer.stats.pending,
                    "holding_back": self.committer.holding_back,
                    "heartbeat": self.committer.changes.heartbeat,
                    "suppressed": self.committer.changes.suppressed_total,
                    "suppressed_by": dict(self.committer.changes.suppressed),
                },
            }
        )

    def _task_alert(self, kind: str, message: str, active: bool) -> None:
        self.journal.alert(kind, message, severity="critical", active=active)

    async def run(self, stop: asyncio.Event, *, drain_grace: float = 2.0) -> None:
        """Run until ``stop`` is set, every task under the supervisor (see its module for the
        tree). Stopping: the tasks stop first, the last readings are committed, the drainers
        get up to ``drain_grace`` seconds to deliver them (not while a database is failing),
        then in-flight writes finish; what is left stays in the outbox. Each stop step runs
        whatever the one before it did."""
        self._loop = asyncio.get_running_loop()
        self.status_file.open()
        self._clear_left_alerts()
        for line in self.plan():
            log.info("plan %s", line)
        tasks = self.tasks
        drain_stop = asyncio.Event()
        sinks = [f"sink:{d.name}" for d in self.drainers]
        for name, drainer in zip(sinks, self.drainers, strict=True):
            tasks.start(name, functools.partial(drainer.run, drain_stop))
        for c in self.coordinators:
            tasks.start(f"device:{c.device_id}", c.run)
        tasks.start("health", self.health.run)
        if self.config.hours is not None or self.config.actuators or self.hours_watch:
            tasks.start("engine", self.engine.run)
        if self.hours_watch is not None:
            tasks.start("hours", self.hours_watch.run)
        if self.entry is not None:
            tasks.start("entry", self.entry.run)
        if self.mqtt is not None:  # polling and committing never wait for the broker
            tasks.start("mqtt", self.mqtt.connect)
        for extension in self.extensions:
            tasks.start(f"extension:{extension.name}", extension.run)
        tasks.start("watchdog", self.watchdog.run)
        self.watchdog.ready(f"{len(self.coordinators)} devices, {len(self.drainers)} sinks")
        try:
            await stop.wait()
        finally:
            self.watchdog.stopping()
            await _step("relock the doors", self._relock)  # while the devices still answer
            await tasks.stop([name for name in tasks.states() if name not in sinks])
            # Read no more, commit what was handled (its QoS 1 messages are acknowledged as
            # the commit lands), and only then disconnect: a message committed after the
            # DISCONNECT is never acknowledged and comes again to the next run, doubled.
            self._hold_back(True)
            await _step("audit the refusals counted so far", _async(self.desk.flush))
            await _step("close the library system", self._close_library)
            await _step("commit the last readings", self._commit)
            await _step("publish the last states", self._close_mqtt)
            await _step("deliver the last commit", functools.partial(self._drain, drain_grace))
            drain_stop.set()
            await tasks.finish(sinks, within=DRAIN_STOP_WAIT)
            for coordinator in self.coordinators:
                await _step(f"close {coordinator.device_id}", coordinator.source.close)
            for drainer in self.drainers:
                await _step(f"close {drainer.name}", _async(drainer.writer.close))
            self._write_status()
            self.status_file.close()
            self.watchdog.close()

    async def _relock(self) -> None:
        if self.entry is not None:
            await self.entry.close()

    async def _close_library(self) -> None:
        if self.library_system is not None:
            await self.library_system.close()
        if self.allow_list is not None:
            self.allow_list.close()

    def _keep_house(self, days: int) -> None:
        """Entry records past retention, and the allow-list's expired cards, deleted."""
        purge_entry_records(self.outbox, clock=self._clock, days=days)
        if self.allow_list is not None:
            self.allow_list.expire()

    async def _close_mqtt(self) -> None:
        if self.mqtt is not None:  # the last commit's states, then offline and DISCONNECT
            self.publisher.flush()
            await self.mqtt.close()

    async def _commit(self) -> None:
        await self.committer.close()

    async def _drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(  # noqa: ASYNC110 - polls the outbox
            self.outbox.depth(d.name) and not d.failing for d in self.drainers
        ):
            await asyncio.sleep(0.05)


def _no_card(_card: str) -> str:
    raise AssertionError("the entry desk is built with the gateway's pseudonym")


_COUNTS = re.compile(
    rf"[ ,]({schema.OCCUPANCY_ENTERED.key}|{schema.OCCUPANCY_EXITED.key})=(\d+)i(?=[ ,])"
)


def _counter_totals(outbox: Outbox, device: str) -> tuple[int, int] | None:
    """A people counter's last accepted totals (entered, exited), from its last committed
    occupancy line in the store; None when the store holds none (or the line lacks one)."""
    entry = outbox.latest(schema.OCCUPANCY.name, device)
    if entry is None:
        return None
    found = dict(_COUNTS.findall(entry.line.rsplit(" ", 1)[0] + " "))
    entered = found.get(schema.OCCUPANCY_ENTERED.key)
    exited = found.get(schema.OCCUPANCY_EXITED.key)
    return None if entered is None or exited is None else (int(entered), int(exited))


async def _step(what: str, run: Callable[[], Awaitable[object]]) -> None:
    """One step of stopping: a failure is logged and the next step runs; each step is logged,
    so a stop that takes long says what it waits on."""
    log.info("stopping: %s", what)
    try:
        await run()
    except Exception:
        log.exception("stopping: could not %s; going on", what)


def _async(call: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return call()

    return run
