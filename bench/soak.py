"""The soak (issue 14): the demo branch for N simulated days on an accelerated clock, with a
fault schedule of at least one fault of each kind per simulated day, then the invariants.

    .venv/bin/python bench/soak.py [--days 30] [--speed 720] [--seed 14]

The branch is the demo's (examples/demo/gateway.yaml: its Modbus simulators and MQTT devices,
driven by the demo's scenario) plus two MQTT passage counters whose every message carries a
number of its own, a real Mosquitto and a real influxd with two sinks (one through a proxy
that can slow, cut and refuse). The gateway is a real process (``bench/soaklib/gatewayproc.py``)
on the world's accelerated clock. Faults (``bench/soaklib/faults.py``) each day: Mosquitto
stopped and killed; influxd killed, refusing (503, 429), slow and cutting, and away until the
outbox's bound drops telemetry; a device silent, answering exceptions, answering garbage (NaN
registers, MQTT bytes that are no JSON); the gateway SIGTERMed, SIGKILLed at a random moment,
right as a commit lands and inside the closing sequence; its wall clock stepped back and
forwards by minutes (also across 22:00); its store's file system read-only, full (a file-size
limit), and its descriptors exhausted. After each, the alert a person should see must appear
in ``gateway status`` and be cleared after the fault. At the end, every invariant of
``bench/soaklib/invariants.py`` is checked, and the figures printed.

The soak needs root (or CAP_SYS_ADMIN): it runs in a private mount namespace (``unshare -m``)
so that the store can be remounted read-only and no mount outlives it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the soak's parts are bench.soaklib
    sys.path.insert(0, str(ROOT))

from bench.soaklib.faults import (  # noqa: E402
    Bound,
    ClockStep,
    DeviceExceptions,
    DeviceGarbage,
    DeviceSilent,
    DiskFull,
    Fault,
    GatewayKill,
    GatewayTerm,
    InfluxdDown,
    MosquittoDown,
    NoFiles,
    ProxyRefuses,
    ProxySlow,
    ReadOnlyStore,
    Scheduled,
)
from bench.soaklib.invariants import (  # noqa: E402
    POLL_SPAN,
    AlertWindow,
    Answered,
    Boundary,
    InfluxContent,
    Journaled,
    Pushed,
    Run,
    Violation,
    check,
    parse_point,
)
from bench.soaklib.world import World  # noqa: E402
from openbranch.edge.cli import main as openbranch  # noqa: E402
from openbranch.edge.core import schema  # noqa: E402
from openbranch.edge.core.config import ModbusTcp  # noqa: E402
from openbranch.edge.demo.day import DEFAULT_CONFIG  # noqa: E402

NS = "OPENBRANCH_SOAK_NAMESPACE"
TZ = ZoneInfo("Europe/Copenhagen")
RAISE_WITHIN = 15.0  # real seconds a fault's alert has to show in `gateway status`
CLEAR_WITHIN = 90.0  # real seconds it has to be cleared after the fault
BROKER_SAVE = 2.0  # real seconds: Mosquitto saves every second; a kill may lose this much
RECONNECT = 10.0  # real seconds the gateway's session may take to connect again
KILL_GRACE = 1.0  # real seconds before a SIGKILL whose polls and journal may be uncommitted,
# or whose QoS 1 acknowledgements may not have left (a loaded machine: 0.32 s was seen)
STOP_GRACE = 0.05  # real seconds before a SIGTERM whose answers may still be undecoded
POLL_LATENCY = 1.0  # real seconds a poll's first answer may come after its stamp (a loaded
# machine: at 800x, a 60 ms wait on a core is 48 s of gateway time)
MAX_BYTES = 1_500_000  # the soak's outbox bound: a few hours of the demo branch

SILENT = ("people-counter", "main-meter", "climate-reading-room", "lights", "district-heat")
EXCEPTIONS = ("sub-meter-lights", "climate-reading-room", "district-heat", "main-meter")


@dataclass
class Outcome:
    """What the soak saw and did."""

    faults: Counter[str] = field(default_factory=Counter)
    windows: list[AlertWindow] = field(default_factory=list)
    operator: list[str] = field(default_factory=list)  # what a person would not have seen
    operator_checks: int = 0


def day_faults(day: int, start: datetime, rng: random.Random) -> list[Scheduled]:
    """Day ``day``'s faults, from its 06:00 on (at least one of each kind)."""
    base = start + timedelta(days=day)

    def at(hours: float, jitter: float = 0.1) -> datetime:
        return base + timedelta(hours=hours + rng.uniform(0, jitter))

    closing = datetime.combine(base.date(), dtime(22, 0), TZ)
    step = rng.choice([-1, 1]) * rng.randint(2, 30) * 60.0
    faults = [
        Scheduled(at(0.5), DeviceSilent(device=SILENT[day % len(SILENT)])),
        Scheduled(at(1.25), DeviceExceptions(device=EXCEPTIONS[day % len(EXCEPTIONS)])),
        Scheduled(at(2.0), DeviceGarbage(device="main-meter", points=("power_l1", "voltage_l1"))),
        Scheduled(at(2.75), MosquittoDown(kill=False)),
        Scheduled(at(3.5), InfluxdDown(kill=True)),
        Scheduled(at(4.25), ProxyRefuses(status=503)),
        Scheduled(at(5.0), ProxyRefuses(status=429)),
        Scheduled(at(5.75), ProxySlow()),
        Scheduled(at(6.5), ReadOnlyStore()),
        Scheduled(at(7.25), DiskFull()),
        Scheduled(at(8.0), NoFiles()),
        Scheduled(at(8.75), GatewayTerm()),
        Scheduled(at(9.5), ClockStep(offset=step)),
        Scheduled(at(10.5), ClockStep(offset=0.0)),
        Scheduled(at(11.0, jitter=0.9), GatewayKill(when="commit" if day % 2 else "random")),
        Scheduled(at(12.0), MosquittoDown(kill=True)),
    ]
    if day % 2 == 0:  # NTP steps forward over the closing: the whole sequence, nothing early
        faults.append(Scheduled(closing - timedelta(minutes=3), ClockStep(offset=300.0)))
    else:  # ...or back over it: the branch must not open again
        faults.append(Scheduled(closing + timedelta(minutes=2), ClockStep(offset=-240.0)))
    faults.append(Scheduled(closing + timedelta(minutes=6), GatewayKill(when="closing")))
    faults.append(Scheduled(closing + timedelta(minutes=45), ClockStep(offset=0.0)))
    faults.append(Scheduled(base + timedelta(hours=17.5), Bound()))
    return faults


async def run_fault(
    world: World,
    item: Scheduled,
    outcome: Outcome,
    deadline: float,
    raise_within: float = RAISE_WITHIN,
) -> None:
    """Apply ``item`` at its time, hold it, check that its alert showed within
    ``raise_within`` real seconds of the fault's effect (``Fault.done`` first true: a bound's
    drop comes only once the outbox has filled), revert it and check the alert cleared."""
    fault = item.fault
    await world.clock.until(item.at)
    if time.monotonic() > deadline:
        return
    outcome.faults[fault.describe()] += 1
    window = AlertWindow(fault.describe(), world.tailer.newest_seq(), fault.alert)
    applied = world.clock.now()
    await fault.apply(world)
    if not await _held(world, fault, applied, outcome, raise_within):
        outcome.operator.append(
            f"{fault.describe()} at {applied.astimezone(TZ):%m-%d %H:%M}: no {fault.alert} "
            f"alert in `gateway status` within {raise_within:g} s of its effect"
        )
    await fault.revert(world)
    if fault.alert is None:
        return
    if not fault.seen_on_mqtt:  # a read-only store cannot commit its own alert: the state
        # topic showed it (``_held``); its window was met only by the next fault's
        outcome.windows.append(window)
    give_up = time.monotonic() + CLEAR_WITHIN
    while time.monotonic() < give_up:
        if not _alert_shown(world, fault.alert, mqtt=fault.seen_on_mqtt):
            return
        await asyncio.sleep(0.05)  # another process's status file: nothing to wait on
    outcome.operator.append(
        f"{fault.describe()}: {fault.alert} still raised {CLEAR_WITHIN:g} s after it"
    )


async def _held(
    world: World, fault: Fault, applied: datetime, outcome: Outcome, raise_within: float
) -> bool:
    """Hold ``fault`` until its ``hold`` is over and its effect came (``done``), watching for
    its alert; whether the alert showed (True for a fault with none)."""
    held_until = applied + timedelta(seconds=fault.hold)
    shown = fault.alert is None
    alert_by = time.monotonic() + raise_within
    done_by = time.monotonic() + max(raise_within, fault.within)
    came: float | None = None  # when the fault's effect was first there (``done``): a bound
    # drops telemetry only once the outbox has filled, and its alert cannot come before that
    while True:
        if not shown and _alert_shown(world, fault.alert, mqtt=fault.seen_on_mqtt):
            shown = True
            outcome.operator_checks += 1
            if fault.alert is not None and not fault.seen_on_mqtt:
                text = await asyncio.to_thread(_status_text, world)
                if fault.alert not in text:
                    outcome.operator.append(f"{fault.describe()}: `gateway status` did not list it")
        now = time.monotonic()
        if came is None and fault.done(world):
            came = now
            alert_by = max(alert_by, came + raise_within)
        over = world.clock.now() >= held_until and came is not None
        if over and (shown or now > alert_by):
            return shown
        if now > (done_by if came is None else max(done_by, alert_by)):
            world.problems.append(f"{fault.describe()}: not over within {fault.within:g} s")
            return shown
        await asyncio.sleep(0.05)


def _alert_shown(world: World, prefix: str | None, *, mqtt: bool = False) -> bool:
    if prefix is not None and mqtt:
        return any(kind.startswith(prefix) for kind in world.watcher.alerts())
    status = world.gateway.status()
    if prefix is None or status is None or status.get("pid") != world.gateway.pid:
        return False
    return any(kind.startswith(prefix) for kind in status.get("alerts", {}))


def _status_text(world: World) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        openbranch(["gateway", "status", str(world.config_path)])
    return out.getvalue()


async def settle(world: World, within: float = 120.0) -> None:
    """Wait until both sinks hold everything committed before now (the faults are over)."""
    deadline = time.monotonic() + within
    newest = world.tailer.newest_seq()
    while time.monotonic() < deadline:
        if world.tailer.cursors and all(c >= newest for c in world.tailer.cursors.values()):
            return
        await asyncio.sleep(0.2)
    world.problems.append(f"the sinks did not catch up within {within:g} s: {world.tailer.cursors}")


def line_wait(world: World) -> float:
    """Real seconds a poll may wait, stamped, for its line: devices behind one Modbus TCP
    endpoint (an RS-485 gateway) are read one request at a time, so a poll of one waits out
    the other's timeout when that one is silent (seen: sub-meter-lights stamped 1,002 s of
    gateway time before its first answer while district-heat, on the same port, was silent)."""
    shared: dict[tuple[str, int], list[float]] = defaultdict(list)
    for device in world.config.devices:
        transport = device.transport
        if isinstance(transport, ModbusTcp):
            shared[(transport.host, transport.port)].append(transport.timeout)
    return max((max(t) for t in shared.values() if len(t) > 1), default=0.0)


def before_kill(world: World, kill: int, stamp: int) -> bool:
    """``stamp`` in the last moments before the SIGKILL at ``kill`` (gateway time): within
    ``KILL_GRACE`` before it, or up to ``STOP_GRACE`` after (the soak reads the time, then
    signals), also on the clock before a step taken in those moments (a process killed right
    after a step may not have read it yet: the 30-day soak of 2026-12-05 saw an alert cleared
    4 minutes "after" a kill that followed a -240 s step by a tenth of a second)."""
    grace = int(KILL_GRACE * world.speed * 1e9)
    after = int(STOP_GRACE * world.speed * 1e9)
    shifts = [0] + [size for when, size in world.steps if kill - grace <= when <= kill + after]
    return any(kill - grace <= stamp + shift <= kill + after for shift in shifts)


def excused_polls(world: World) -> list[Answered]:
    """A poll answered in the last moments before a SIGKILL, or before the store's file
    system failed, may not have been committed yet: its reading is never accepted (the
    devices' answers are not acknowledged data; a pushed message comes again, a poll does
    not)."""
    grace = int(KILL_GRACE * world.speed * 1e9)
    at_stop = int(STOP_GRACE * world.speed * 1e9)
    out = []
    for a in world.answered:
        if a.excused:
            out.append(a)
        elif any(before_kill(world, k, a.time_ns) for k in world.kills):
            out.append(dataclasses.replace(a, excused="in the last moments before a SIGKILL"))
        elif any(f - grace <= a.time_ns <= f for f, _ in world.journal_excused):
            out.append(
                dataclasses.replace(a, excused="in the last moments before the store failed")
            )
        elif any(down - at_stop <= a.time_ns <= up for down, up in world.downtimes):
            # the gateway was stopping: the pollers stop first, and a poll in flight is
            # cancelled (its answers, if they came, were never decoded: also one answered
            # the moment before the SIGTERM, still in the device's transport)
            out.append(dataclasses.replace(a, excused="in flight as the gateway stopped"))
        else:
            out.append(a)
    return out


def delivered(world: World) -> dict[tuple[str, int], list[int]]:
    """When the gateway accepted each passage message (its stamps, gateway time): later than
    its publishing when the broker kept it while the gateway or the broker was away, and again
    when the broker sent it again."""
    stamps: dict[tuple[str, int], list[int]] = defaultdict(list)
    for entry in world.accepted.entries(schema.OCCUPANCY.name):
        if entry.device.startswith("passage-"):
            value = parse_point(entry.line).fields.get(schema.OCCUPANCY_ENTERED.key)
            if isinstance(value, int):
                stamps[(entry.device, value)].append(entry.time_ns)
    return stamps


def excused_pushes(world: World) -> list[Pushed]:
    """A killed broker loses what it acknowledged since its last save (every second) and
    sends again what it delivered since then: those messages may be missing or doubled. What
    counts is when a message was published and each time it was delivered: a message the
    broker kept while the gateway was down is delivered at the gateway's return, and a broker
    killed right after sends it again. Each fault a message's moments fall in may send it once
    more (QoS 1 is at least once, once per fault)."""
    slack = int(BROKER_SAVE * world.speed * 1e9)
    grace = int(KILL_GRACE * world.speed * 1e9)
    reconnect = int(RECONNECT * world.speed * 1e9)
    accepted = delivered(world)
    kills = {down for down, _ in world.broker_kills}
    out = []
    for p in world.passages.pushed:
        moments = (p.time_ns, *accepted.get((p.device, p.value), ()))

        def within(a: int, b: int, moments: tuple[int, ...] = moments) -> bool:
            # also on the clock before a step taken in the window (the 30-day soak of 4071a86:
            # two messages acknowledged just before a +1440 s step, on the clock before it,
            # then lost by a broker killed 11 minutes later)
            shifts = [0] + [size for when, size in world.steps if a <= when <= b]
            return any(a <= t + shift <= b for t in moments for shift in shifts)

        # may come again: committed in the last moments before a SIGKILL (its acknowledgement
        # may not have left); delivered as the store's file system failed (a commit whose
        # fsync failed is not acknowledged, yet its rows may have been sent on); delivered as
        # the broker went away (the acknowledgement may not have reached it)
        again = (
            sum(any(before_kill(world, k, t) for t in moments) for k in world.kills)
            + sum(within(a - grace, b) for a, b in world.journal_excused)
            + sum(within(down - grace, up) for down, up in world.broker_downs)
        )
        # may be lost, or come again: acknowledged by a broker killed before its next save
        killed = sum(within(down - slack, up + reconnect) for down, up in world.broker_kills)
        # ...or acknowledged by a broker restarted after a clean stop, in its first moments: the
        # 30-day soak of 2026-12-05 lost one message of each passage acknowledged then, while
        # the ones before and after it came (a race in restoring the gateway's session; compare
        # eclipse-mosquitto/mosquitto#769)
        killed += sum(
            within(up - slack, up + slack) for down, up in world.broker_downs if down not in kills
        )
        if killed:
            out.append(
                Pushed(
                    p.device,
                    p.measurement,
                    p.field,
                    p.value,
                    p.time_ns,
                    1 + again + killed,
                    "acknowledged by a broker killed before its next save, or by the restarted"
                    " one before the gateway was back (Mosquitto 2.0.11 kept it from the"
                    " restored session)",
                )
            )
        elif again:
            out.append(dataclasses.replace(p, copies=1 + again))
        else:
            out.append(p)
    return out


def journal(world: World) -> list[Journaled]:
    grace = int(KILL_GRACE * world.speed * 1e9)

    def excused(stamp: int) -> str:
        if any(before_kill(world, k, stamp) for k in world.kills):
            return "in the last moments before a SIGKILL"
        if any(a - grace <= stamp <= b for a, b in world.journal_excused):
            # also in the last moments before: journaled, its commit still to come
            return "while the store was read-only (never committed)"
        return ""

    return [
        Journaled(kind, message, stamp, excused(stamp))
        for stamp, kind, message, _pid in world.gateway.journaled
    ]


async def soak(args: argparse.Namespace, say: Callable[[str], None] = print) -> int:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="openbranch-soak-"))
    start = datetime.combine(args.start, dtime(6, 0), TZ)
    rng = random.Random(args.seed)
    world = World(
        workdir=workdir,
        template=DEFAULT_CONFIG,
        start=start,
        speed=args.speed,
        max_bytes=args.max_bytes,
    )
    began = time.monotonic()
    outcome = Outcome()
    last_report = began
    try:
        await world.setup()
        end = start + timedelta(days=args.days)
        deadline = world.clock.at(end)
        say(
            f"Soak: {args.days:g} simulated days of {world.config.branch.id} from "
            f"{start:%Y-%m-%d %H:%M} ({TZ.key}) at {args.speed:g}x; work in {workdir}"
        )
        schedule = [
            s
            for day in range(int(args.days + 0.999))
            for s in day_faults(day, start, rng)
            if s.at < end - timedelta(hours=1) and not args.no_faults
        ]
        schedule.sort(key=lambda s: s.at)
        for item in schedule:
            await run_fault(world, item, outcome, deadline)
            if args.report_every and time.monotonic() - last_report > args.report_every:
                last_report = time.monotonic()
                say(
                    f"  {world.clock.now().astimezone(TZ):%Y-%m-%d %H:%M}: "
                    f"{sum(outcome.faults.values())} faults so far, "
                    f"{world.accepted.last_seq():,} entries committed"
                )
        await world.clock.until(end)
        await settle(world)
        simulated = world.clock.now() - start
        final = world.gateway.status() or {}  # what is still raised as the run ends
        await world.finish()
        run = Run(
            accepted=world.accepted,
            sinks=[
                InfluxContent(sink, world.influxd.url, db)
                for sink, db in zip(world.tailer.cursors, ("soak_a", "soak_b"), strict=False)
            ],
            dropped=world.tailer.dropped,
            cursors=dict(world.tailer.cursors),
            pushed=excused_pushes(world),
            answered=excused_polls(world),
            journaled=journal(world),
            boundaries=[
                Boundary(int(t.at.timestamp() * 1e9), t.mode_to.value)
                for t in world.calendar.transitions(start, end)  # not the clock after the end
            ],
            until_ns=int(end.timestamp() * 1e9),
            downtimes=world.downtimes,
            steps=world.steps,
            faults=outcome.windows,
            still_true=set(final.get("alerts", {})),
            samples=world.samples,
            poll_span=max(POLL_SPAN, int((POLL_LATENCY + line_wait(world)) * world.speed * 1e9)),
            heartbeat=int(world.config.store.heartbeat * 1e9),  # report by exception
            deadbands=world.deadbands,
        )
        if args.workdir:  # the device records, for a look after the run
            with (workdir / "records.json").open("w", encoding="utf-8") as out:
                json.dump(
                    {
                        "answered": [dataclasses.astuple(a) for a in run.answered],
                        "pushed": [dataclasses.astuple(p) for p in run.pushed],
                        "journaled": [dataclasses.astuple(j) for j in run.journaled or ()],
                        "kills": world.kills,
                        "downtimes": world.downtimes,
                        "steps": world.steps,
                        "broker_downs": world.broker_downs,
                        "broker_kills": world.broker_kills,
                        "journal_excused": world.journal_excused,
                        "faults": [dataclasses.astuple(w) for w in outcome.windows],
                    },
                    out,
                )
        violations = check(run)
        violations += [Violation("operator", p) for p in outcome.operator]
        violations += [Violation("soak", p) for p in world.problems + world.gateway.problems]
        report(
            world=world,
            run=run,
            outcome=outcome,
            violations=violations,
            simulated=simulated,
            wall=time.monotonic() - began,
            say=say,
        )
        return 1 if violations else 0
    finally:
        with contextlib.suppress(Exception):
            await world.finish()
        world.close()
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def report(
    *,
    world: World,
    run: Run,
    outcome: Outcome,
    violations: list[Violation],
    simulated: timedelta,
    wall: float,
    say: Callable[[str], None],
) -> None:
    f = run.figures
    produced = f["produced_polls"] + f["produced_pushed"]
    say(
        f"simulated {simulated.total_seconds() / 86400:.2f} days in {wall / 60:.1f} min of wall "
        f"time ({world.speed:g}x), {world.gateway.starts} gateway processes"
    )
    say(
        f"readings produced: {produced:,} ({f['produced_polls']:,} polls answered by Modbus "
        f"devices, {f['produced_pushed']:,} passage messages acknowledged by the broker; "
        f"{f['produced_lost_excused']:,} not accepted and excused)"
    )
    say(
        f"readings accepted: {f['accepted_device_readings']:,} device readings; "
        f"{f['accepted']:,} entries with the gateway's own"
    )
    for sink in run.sinks:
        say(
            f"stored in {sink.name}: {f['stored:' + sink.name]:,} points "
            f"({f['missing:' + sink.name]:,} accepted readings missing, "
            f"{f['pending:' + sink.name]:,} still waiting in the outbox at the end)"
        )
    say(f"dropped by the bound ({world.max_bytes:,} bytes): {f['dropped_by_bound']:,}")
    say(
        f"audit entries: {f['audit_entries']:,} ({f['alerts_raised']:,} alerts raised, "
        f"{f['mode_changes']:,} mode changes, {f['alarm_arms']:,} alarm arms)"
    )
    say(f"faults injected: {sum(outcome.faults.values())}")
    for name, n in sorted(outcome.faults.items()):
        say(f"  {n:>4}  {name}")
    say(
        f"operator: {outcome.operator_checks} alerts shown in `gateway status` while their "
        f"fault lasted, {len(outcome.operator)} missed or not cleared"
    )
    if run.samples:
        first, last = run.samples[0], run.samples[-1]
        rss = max(s.rss for s in run.samples)
        fds = max(s.fds for s in run.samples)
        say(
            f"gateway RSS MB start/max/end: {first.rss / 1e6:.0f}/{rss / 1e6:.0f}/"
            f"{last.rss / 1e6:.0f}; open fds start/max/end: {first.fds}/{fds}/{last.fds}"
        )
    losses = world.gateway.store_losses
    say(f"store losses the gateway found (store_lost): {len(losses)}")
    for message in losses:
        say(f"  {message}")
    say(f"invariant violations: {len(violations)}")
    by_invariant: dict[str, list[Violation]] = {}
    for v in violations:
        by_invariant.setdefault(v.invariant, []).append(v)
    for name, found in by_invariant.items():
        say(f"  {name}: {len(found)}")
        for v in found[:12]:
            say(f"    {v.reason}")


def _unshared() -> None:
    """Run again in a private mount namespace (once)."""
    if os.environ.get(NS) == "1":
        return
    os.environ[NS] = "1"
    unshare = shutil.which("unshare") or "unshare"
    os.execvp(unshare, [unshare, "-m", "--propagation", "private", sys.executable, *sys.argv])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30.0, help="simulated days (default 30)")
    parser.add_argument("--speed", type=float, default=720.0, help="world seconds per second")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 11, 23))
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES, help="the outbox's bound")
    parser.add_argument("--no-faults", action="store_true", help="a quiet run, for comparison")
    parser.add_argument("--workdir", type=Path, help="keep the run's files here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--report-every", type=float, default=300.0, help="real seconds")
    args = parser.parse_args(argv)
    _unshared()
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
