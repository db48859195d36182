"""The `openbranch` command line.

Subcommand groups come from the ``openbranch.cli`` entry point group (pyproject.toml): each is
a function that adds its parser to the subparsers. Edge provides `gateway`; other packages add
theirs without edge importing them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from openbranch.edge.core.clock import SystemClock
from openbranch.edge.core.config import (
    GatewayConfig,
    MqttConfig,
    SecretRef,
    gateway_json_schema,
    load_gateway_config,
)
from openbranch.edge.core.device import DeviceSource
from openbranch.edge.core.imported import (
    HoursSourceError,
    ImportedHours,
    WebsiteAnswer,
    WebsiteHours,
    effective_hours,
    fetcher,
    read_imported,
    read_website,
    write_yaml,
)
from openbranch.edge.core.registry import BuildContext, default_registry, load_checked
from openbranch.edge.core.schedule import OpeningHours
from openbranch.edge.core.yamlsource import ConfigError, Problem, load_yaml
from openbranch.edge.hours.calendar import Calendar
from openbranch.edge.hours.control import sign
from openbranch.edge.hours.importing import DayChange, apply_changes, compare, published
from openbranch.edge.hours.policy import planned_actions
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.edge.runtime.hours_watch import age_text
from openbranch.edge.runtime.mqtt import MqttError, publish_once
from openbranch.edge.runtime.statusfile import read_status
from openbranch.edge.telemetry.outbox import OutboxError, OutboxNotReady, store_problem

__all__ = [
    "command_commands",
    "gateway_commands",
    "hours_commands",
    "main",
    "schedule_commands",
]

Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _load(
    path: Path, *, secrets: bool, store: Path | bool, as_this_user: bool = True
) -> GatewayConfig:
    """``load_checked``, and with ``secrets`` every secret reference resolved now: one that is
    missing or empty is a located error here, not a traceback once the gateway runs. With
    ``store`` the local store's path is checked too: ``store.path`` at its line (True), or
    the path of ``--store``; by ``gateway check`` without what depends on the user (the
    gateway may run as another), by ``gateway run`` with it."""
    config = load_gateway_config(
        path, check_device=default_registry().check_device, secrets=secrets
    )
    if store is False:
        return config
    given = None if store is True else store
    problem = store_problem(given or config.store.path, as_this_user=as_this_user)
    if problem is not None:
        if given is not None:
            raise ConfigError([Problem("--store", None, (), f"{given}: {problem}")])
        raise load_yaml(path).error(("store", "path"), f"{config.store.path}: {problem}")
    return config


def _check(args: argparse.Namespace) -> int:
    config = _load(
        args.config, secrets=not args.elsewhere, store=not args.elsewhere, as_this_user=False
    )
    registry = default_registry()
    context = BuildContext(branch=config.branch.id, clock=SystemClock())
    print(
        f"{args.config}: branch {config.branch.id} ({config.branch.name}), "
        f"{len(config.devices)} devices: OK"
    )
    sources = [registry.build(device, context) for device in config.devices]
    for source in sources:
        print("  " + source.describe_plan())
    if args.connect or args.scan is not None:
        asyncio.run(_connect(config, sources, probe=args.connect, scan=args.scan))
    return 0


@runtime_checkable
class _Probed(Protocol):
    """A source that reads all its points once and tells how it went (Modbus devices)."""

    async def probe(self) -> Sequence[str]: ...


@runtime_checkable
class _Scanned(Protocol):
    """A source that can ask every unit id on its bus whether it is there."""

    async def scan(self, *, within: float, names: Mapping[int, str]) -> Sequence[str]: ...


async def _connect(
    config: GatewayConfig, sources: Sequence[DeviceSource], *, probe: bool, scan: float | None
) -> None:
    """`gateway check --connect`: each device's points read once; `--scan`: each bus's unit
    ids, asked through the first device on it that can scan."""
    pairs = list(zip(config.devices, sources, strict=True))
    try:
        for device, source in pairs if probe else []:
            print(f"{device.id} ({device.profile} on {device.transport.bus}):")
            if not isinstance(source, _Probed):
                print(f"  not probed: {device.transport.type} devices report on their own")
                continue
            for line in await source.probe():
                print("  " + line)
        scanned: set[str] = set()
        for device, source in pairs if scan is not None else []:
            bus = device.transport.bus
            if bus in scanned or not isinstance(source, _Scanned):
                continue
            scanned.add(bus)
            names = {
                unit: d.id
                for d in config.devices
                if d.transport.bus == bus
                and (unit := getattr(d.transport, "unit_id", None)) is not None
            }
            print(f"unit ids on {bus} (at most {scan:g} s):")
            for line in await source.scan(within=scan or 0.0, names=names):
                print("  " + line)
    finally:
        for source in sources:
            await source.close()


def _schema(_: argparse.Namespace) -> int:
    print(gateway_json_schema())
    return 0


def _run(args: argparse.Namespace) -> int:
    config = _load(args.config, secrets=True, store=args.store or True)
    try:
        outbox = open_outbox(config, args.store)
    except OutboxError as exc:  # one gateway per store (issue 12); a store that cannot open
        print(f"openbranch gateway run: not started: {exc}", file=sys.stderr)
        return 1
    gateway = Gateway(
        config=config, registry=default_registry(), clock=SystemClock(), outbox=outbox
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if args.duration:
            loop.call_later(args.duration, stop.set)
        await gateway.run(stop)

    try:
        asyncio.run(main())
    finally:
        outbox.close()
    print(f"stopped: {gateway.committer.accepted} readings accepted into {outbox.path}")
    return 0


STALE_AFTER = 180.0  # seconds without a commit that `gateway status` calls out


def _print_live(store: Path | str) -> None:
    """What the running gateway last wrote of itself: its status file beside the store."""
    live = read_status(store)
    if live is None:
        print("gateway: no status written yet")
    else:
        print(f"gateway (pid {live['pid']}), status as of {live['updated']}:")
        health = live["store"]
        if health["failing"]:
            print(
                f"  STORE REFUSES COMMITS: {health['last_error']}; {health['waiting']} entries "
                "wait in memory" + (", sources held back" if health["holding_back"] else "")
            )
        if health.get("suppressed") is not None:  # report by exception (decision 104)
            by = ", ".join(f"{n} {m}" for m, n in sorted(health["suppressed_by"].items()))
            print(
                f"  suppressed unchanged: {health['suppressed']} readings not written (within "
                f"their deadband, heartbeat {health['heartbeat']:g} s)" + (f": {by}" if by else "")
            )
        for name, task in live["tasks"].items():
            failing = f", FAILING: {task['last_error']}" if task["failing"] else ""
            print(f"  task {name}: {task['state']}, {task['restarts']} restarts{failing}")
        refused = live.get("control_refused") or {}
        if refused:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(refused.items()))
            print(f"  control messages refused: {sum(refused.values())} ({kinds})")
        alerts = live["alerts"]
        print(f"  alerts raised: {len(alerts)}" if alerts else "  alerts raised: none")
        for kind, message in alerts.items():
            print(f"    {kind}: {message}")


def _status(args: argparse.Namespace) -> int:
    config = load_checked(args.config)
    path = args.store or config.store.path
    if not Path(path).exists():
        print(f"{path}: no outbox yet (the gateway has not run)", file=sys.stderr)
        return 1
    try:
        outbox = open_outbox(config, path, read_only=True)
    except OutboxNotReady as exc:
        print(exc, file=sys.stderr)
        return 1
    stats = outbox.stats()
    now_ns = time.time_ns()
    print(
        f"outbox {outbox.path}: {stats.entries} entries, {stats.live_bytes / 1e6:.1f} MB "
        f"of {stats.max_bytes / 1e6:.0f} MB, {stats.dropped} dropped"
    )
    newest = outbox.newest_ns()
    if newest is not None:
        age = (now_ns - newest) / 1e9
        print(f"newest entry: {age:.0f} s ago (the gateway commits its health every minute)")
        if age > STALE_AFTER:
            print(
                f"  NOTHING COMMITTED FOR {age:.0f} s: if the gateway runs, its store refuses "
                "commits (alert store_failed on MQTT, journalctl -u openbranch-gateway)"
            )
    for sink in outbox.sinks:
        oldest = stats.oldest_pending_ns[sink]
        lag = "none" if oldest is None else f"{(now_ns - oldest) / 1e9:.0f} s"
        print(
            f"  sink {sink}: {stats.depth[sink]} pending, lag {lag}, "
            f"{stats.dead_letters[sink]} dead letters"
        )
    for device in config.devices:
        raw = outbox.get_state(f"availability:{device.id}")
        if raw is None:
            print(f"  device {device.id}: never polled")
        else:
            state = json.loads(raw)
            word = "available" if state["available"] else "UNAVAILABLE"
            print(f"  device {device.id}: {word} since {state['since']}")
    _print_imported(config.website_hours)
    _print_live(path)
    outbox.close()
    return 0


def _print_imported(website: WebsiteHours | None) -> None:
    """`gateway status`: how old the hours imported from the website are."""
    if website is None:
        return
    try:
        imported = read_imported(website.imported_file)
    except ConfigError as exc:
        print(f"hours from the website: {website.imported_file} CANNOT BE READ: {exc}")
        return
    if imported is None:
        print(f"hours from the website ({website.url}): NEVER IMPORTED (openbranch hours import)")
        return
    now = datetime.now(UTC)
    stale = now - imported.fetched_at > timedelta(hours=website.stale_after_hours)
    print(
        f"hours from the website: fetched {imported.fetched_at:%Y-%m-%d %H:%M} UTC, "
        f"{age_text(imported.fetched_at, now)} ago"
        + (f", STALE (more than {website.stale_after_hours} h)" if stale else "")
        + f"; {len(imported.exceptions)} dated exceptions, {imported.start}..{imported.end}"
    )


def gateway_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = sub.add_parser("gateway", help="run and check a branch gateway")
    gsub = gateway.add_subparsers(dest="action", required=True)
    check = gsub.add_parser("check", help="validate a config and print each device's plan")
    check.add_argument("config", type=Path)
    check.add_argument(
        "--elsewhere",
        action="store_true",
        help="the config is checked away from its gateway: do not read the secrets it refers "
        "to, nor look at its store's path",
    )
    check.add_argument(
        "--connect",
        action="store_true",
        help="read every point of every device once: value, unit, time per request, exceptions",
    )
    check.add_argument(
        "--scan",
        type=float,
        nargs="?",
        const=60.0,
        metavar="SECONDS",
        help="ask unit ids 1-247 on each Modbus bus which answer, for at most SECONDS (60)",
    )
    check.set_defaults(func=_check)
    run = gsub.add_parser("run", help="poll the configured devices until SIGTERM or SIGINT")
    run.add_argument("config", type=Path)
    run.add_argument("--store", type=Path, help="local store path (default: from the config)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.set_defaults(func=_run)
    status = gsub.add_parser("status", help="outbox depth, dead letters, sink lag, devices")
    status.add_argument("config", type=Path)
    status.add_argument("--store", type=Path, help="outbox path (default: from the config)")
    status.set_defaults(func=_status)
    schema = gsub.add_parser("schema", help="print the JSON Schema of gateway configs")
    schema.set_defaults(func=_schema)


def _plan(args: argparse.Namespace) -> int:
    config = load_checked(args.config)
    tz = ZoneInfo(config.branch.timezone)
    start_day = args.start or datetime.now(tz).date()
    start = datetime.combine(start_day, datetime.min.time(), tz)
    end = start + timedelta(days=args.days)
    calendar = Calendar(_hours(config), tz)
    if args.format == "dpl-json":
        return _dpl_json(args, config, calendar, start_day)
    transitions = calendar.transitions(start, end)
    actions = planned_actions(transitions, config.closing)
    if args.json or args.format == "json":
        print(
            json.dumps(
                {
                    "branch": config.branch.id,
                    "timezone": config.branch.timezone,
                    "transitions": [
                        {
                            "at": t.at.isoformat(),
                            "local": t.local.isoformat(),
                            "from": t.mode_from,
                            "to": t.mode_to,
                            "source": t.source,
                            "reason": t.reason,
                        }
                        for t in transitions
                    ],
                    "actions": [
                        {
                            "at": a.at.isoformat(),
                            "local": a.at.astimezone(tz).isoformat(),
                            "what": a.what,
                            "detail": a.detail,
                        }
                        for a in actions
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(
        f"{config.branch.name} ({config.branch.id}), {config.branch.timezone}: "
        f"{start_day} + {args.days} days, {len(transitions)} mode changes"
    )
    by_time: dict[datetime, list[str]] = {}
    for t in transitions:
        by_time.setdefault(t.at, []).append(f"{t.mode_from} -> {t.mode_to}  ({t.reason})")
    for a in actions:
        by_time.setdefault(a.at, []).append(f"  {a.what}: {a.detail}")
    day = None
    for at in sorted(by_time):
        local = at.astimezone(tz)
        if local.date() != day:
            day = local.date()
            print(f"{local:%a %d %b %Y}")
        for i, text in enumerate(sorted(by_time[at], key=lambda x: x.startswith(" "))):
            print(f"  {local:%H:%M}  {text}" if i == 0 else f"         {text}")
    return 0


def _hours(config: GatewayConfig) -> OpeningHours:
    """The hours the gateway runs on: the config's, with those imported from the website."""
    website = config.website_hours
    imported = None if website is None else read_imported(website.imported_file)
    return effective_hours(config.hours, imported)


def _dpl_json(
    args: argparse.Namespace, config: GatewayConfig, calendar: Calendar, start_day: date
) -> int:
    """`schedule plan --format dpl-json`: the days as DPL CMS opening hours instances."""
    website = config.website_hours
    branch_id = args.branch_id or (website.branch_id if website else None)
    if branch_id is None:
        print("--format dpl-json: give --branch-id (no website_hours.branch_id)", file=sys.stderr)
        return 2
    instances = published(
        calendar,
        start=start_day,
        days=args.days,
        branch_id=branch_id,
        categories=dict(website.categories) if website else None,
    )
    print(json.dumps(instances, indent=2, ensure_ascii=False))
    return 0


MAX_PLAN_DAYS = 3660  # ten years of mode changes


def _days(text: str) -> int:
    """argparse type of ``--days``: a whole number of days the plan covers."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if not 1 <= days <= MAX_PLAN_DAYS:
        raise argparse.ArgumentTypeError(f"{text} is not in 1..{MAX_PLAN_DAYS}")
    return days


def _first_day(text: str) -> date:
    """argparse type of ``--from``: a date with room for a plan before and after it."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    if not date(1971, 1, 1) <= day <= date(9999, 1, 1) - timedelta(days=MAX_PLAN_DAYS + 2):
        raise argparse.ArgumentTypeError(f"{text} is out of range (1971 to 9988)")
    return day


def _simulate(args: argparse.Namespace) -> int:
    from openbranch.edge.demo.day import simulate_day  # noqa: PLC0415 - the demo is heavy to import

    logging.getLogger().setLevel(logging.WARNING)
    simulate_day(args.config, args.date, args.duration)
    return 0


def schedule_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedule = sub.add_parser("schedule", help="the branch's opening hours")
    ssub = schedule.add_subparsers(dest="action", required=True)
    plan = ssub.add_parser("plan", help="the coming mode changes and actions, local time")
    plan.add_argument("config", type=Path)
    plan.add_argument("--days", type=_days, default=7, help=f"1 to {MAX_PLAN_DAYS}")
    plan.add_argument("--from", dest="start", type=_first_day, help="first day (local)")
    plan.add_argument("--json", action="store_true", help="the same as --format json")
    plan.add_argument(
        "--format",
        choices=["text", "json", "dpl-json"],
        default="text",
        help="dpl-json: the days' hours as DPL CMS's opening hours API answers them",
    )
    plan.add_argument("--branch-id", type=int, help="dpl-json: the website's branch id")
    plan.set_defaults(func=_plan)
    simulate = ssub.add_parser(
        "simulate", help="run one day of the branch against simulated devices, fast"
    )
    simulate.add_argument("config", type=Path)
    simulate.add_argument("--date", type=date.fromisoformat, required=True)
    simulate.add_argument("--duration", type=float, default=30.0, help="real seconds")
    simulate.set_defaults(func=_simulate)


def _command(args: argparse.Namespace) -> int:
    config = load_checked(args.config)
    try:
        if args.key_file:
            key = SecretRef(file=Path(args.key_file)).resolve()
        elif config.control is not None:
            key = config.control.key.resolve()
        else:
            print(f"{args.config}: no control key (control.key) and no --key-file", file=sys.stderr)
            return 2
    except LookupError as exc:
        where = "--key-file" if args.key_file else f"{args.config}: control.key"
        print(f"{where}: {exc}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    message: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "issued_at": now.isoformat(),
        "expires_at": (now + timedelta(minutes=args.valid)).isoformat(),
        "action": args.action_name,
        "who": args.who,
        "reason": args.reason,
    }
    if args.action_name in ("override", "close_now"):
        try:
            until = _until(args.until, ZoneInfo(config.branch.timezone), now)
        except ValueError as exc:
            print(f"--until: {exc}", file=sys.stderr)
            return 2
        message["until"] = until.isoformat()
        if args.action_name == "override":
            message["mode"] = args.mode
    signed = sign(message, key.encode())
    text = json.dumps(signed)
    print(text)
    if args.publish:
        if config.mqtt is None:
            print("no mqtt section in the config: nothing to publish to", file=sys.stderr)
            return 2
        topic = f"{config.mqtt.topic_prefix}/{config.branch.id}/control"
        try:
            user, password = _operator(args, config.mqtt)
            publish_once(config.mqtt, topic, text, username=user, password=password)
        except (LookupError, MqttError) as exc:
            print(f"not published: {exc}", file=sys.stderr)
            return 1
        print(f"published to {topic}, acknowledged by the broker", file=sys.stderr)
    return 0


OPERATOR_PASSWORD_ENV = "OPENBRANCH_MQTT_PASSWORD"  # noqa: S105 - the variable's name


def _operator(args: argparse.Namespace, mqtt: MqttConfig) -> tuple[str | None, str | None]:
    """The account a person's command goes with: ``--mqtt-user`` (the rendered ACL's operator
    account is ``operations``) with its password from a file or the environment, never an
    argument. The gateway's own account reads its control topic and may not write it."""
    if args.mqtt_user is None:
        if mqtt.username is not None:
            raise LookupError(
                "a command goes with an operator's account: --mqtt-user USER and "
                f"${OPERATOR_PASSWORD_ENV} or --mqtt-password-file (not the gateway's "
                f"{mqtt.username!r}, which may only read its control topic)"
            )
        return None, None  # a broker without accounts
    if args.mqtt_password_file:
        password = SecretRef(file=Path(args.mqtt_password_file)).resolve()
    else:
        password = SecretRef(env=OPERATOR_PASSWORD_ENV).resolve()
    return str(args.mqtt_user), password


def _until(text: str, tz: ZoneInfo, now: datetime) -> datetime:
    """``--until``: an ISO time (local when it has no offset), or a time of day ("23:00"),
    meaning its next occurrence; ValueError says what is wrong."""
    try:
        clock = time_of_day.fromisoformat(text) if len(text) <= 8 and ":" in text else None
        if clock is not None:
            local = now.astimezone(tz)
            until = datetime.combine(local.date(), clock, tz)
            if until <= local:
                until = datetime.combine(local.date() + timedelta(days=1), clock, tz)
            return until
        until = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give a time of day (23:00) or an ISO time "
            "(2026-11-25T23:00, local unless it has an offset)"
        ) from None
    return until if until.tzinfo is not None else until.replace(tzinfo=tz)


def _minutes(text: str) -> int:
    """argparse type of ``--valid``: minutes a control message is valid (the gateway takes
    at most an hour)."""
    try:
        minutes = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of minutes") from None
    if not 1 <= minutes <= 60:
        raise argparse.ArgumentTypeError(f"{text} is not in 1..60 (the gateway takes an hour)")
    return minutes


def command_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = sub.add_parser("command", help="create (and publish) a signed control message")
    csub = command.add_subparsers(dest="action_name", required=True)
    for name, helptext in (
        ("override", "put the branch in a mode until a time"),
        ("close_now", "close the branch now, until a time"),
        ("clear_emergency", "clear the emergency mode after a fire alarm"),
        ("cancel_overrides", "return to the calendar"),
    ):
        p = csub.add_parser(name, help=helptext)
        p.add_argument("config", type=Path)
        if name == "override":
            p.add_argument(
                "--mode",
                required=True,
                choices=["closed", "staffed", "self_service", "maintenance"],
            )
        if name in ("override", "close_now"):
            p.add_argument(
                "--until",
                required=True,
                help="a time of day (23:00: its next occurrence) or an ISO time; local if no "
                "offset",
            )
        p.add_argument("--who", required=True, help="on whose behalf, e.g. ops:anna")
        p.add_argument("--reason", default="")
        p.add_argument("--valid", type=_minutes, default=5, help="minutes the message is valid")
        p.add_argument("--key-file", help="the gateway's key (default: control.key)")
        p.add_argument("--publish", action="store_true", help="publish to the config's broker")
        p.add_argument("--mqtt-user", help="with --publish: the operator's MQTT account")
        p.add_argument(
            "--mqtt-password-file",
            help=f"its password (or ${OPERATOR_PASSWORD_ENV}; never an argument)",
        )
        p.set_defaults(func=_command)


def _website(path: Path) -> tuple[GatewayConfig, WebsiteHours]:
    config = load_checked(path)
    if config.website_hours is None:
        raise load_yaml(path).error(
            (), "no website_hours section: where the branch's hours are published (README)"
        )
    return config, config.website_hours


def _keeps(website: WebsiteHours) -> str:
    """What the gateway goes on with when the website cannot be read: how old it is."""
    try:
        imported = read_imported(website.imported_file)
    except ConfigError:
        imported = None
    if imported is None:
        return "the gateway keeps its config's hours (nothing imported yet)"
    age = age_text(imported.fetched_at, datetime.now(UTC))
    fetched = f"{imported.fetched_at:%Y-%m-%d %H:%M} UTC"
    return f"the gateway keeps the hours fetched {age} ago ({fetched})"


def _changes(
    config: GatewayConfig, website: WebsiteHours, answer: WebsiteAnswer, *, auto: bool
) -> tuple[ImportedHours | None, list[DayChange]]:
    previous = read_imported(website.imported_file)
    own = config.hours or OpeningHours()
    changes = compare(
        own=own,
        current=effective_hours(own, previous),
        answer=answer,
        website=website,
        tz=config.branch.timezone,
        auto=auto,
    )
    return previous, changes


def _show(answer: WebsiteAnswer, changes: list[DayChange]) -> None:
    age = age_text(answer.fetched_at, datetime.now(UTC))
    print(
        f"website {answer.source}\n  fetched {answer.fetched_at:%Y-%m-%d %H:%M} UTC ({age} ago), "
        f"{answer.start}..{answer.end}: {len(changes)} days differ from the gateway's hours"
    )
    for change in changes:
        print("\n".join("  " + line for line in change.lines()))
    for change in changes:
        for warning in change.warnings:
            print(warning)


def _hours_import(args: argparse.Namespace) -> int:
    config, website = _website(args.config)
    start = args.start or datetime.now(ZoneInfo(config.branch.timezone)).date()
    end = start + timedelta(days=7 * website.weeks - 1)
    try:
        answer = fetcher(website.source)(website, start, end)
    except HoursSourceError as exc:
        print(f"openbranch hours import: nothing imported: {exc}", file=sys.stderr)
        print(_keeps(website), file=sys.stderr)
        return 1
    header = "# The website's hours as `openbranch hours import` read them (not applied).\n"
    if not _written(website.website_file, answer, header):
        return 1
    print(f"{website.website_file}: written (hours apply to apply the differences)")
    _show(answer, _changes(config, website, answer, auto=False)[1])
    return 0


def _written(path: Path, model: ImportedHours | WebsiteAnswer, header: str) -> bool:
    """Write ``path`` (atomically); a folder the user may not write is said, not a traceback."""
    try:
        write_yaml(path, model, header)
    except OSError as exc:
        print(f"{path}: not written: {exc.strerror} (nothing changed)", file=sys.stderr)
        return False
    return True


def _answer(website: WebsiteHours) -> WebsiteAnswer | None:
    answer = read_website(website.website_file)
    if answer is None:
        print(f"{website.website_file}: nothing imported yet (openbranch hours import)")
    return answer


def _hours_diff(args: argparse.Namespace) -> int:
    config, website = _website(args.config)
    answer = _answer(website)
    if answer is None:
        return 1
    _show(answer, _changes(config, website, answer, auto=args.auto)[1])
    return 0


def _hours_apply(args: argparse.Namespace) -> int:
    config, website = _website(args.config)
    answer = _answer(website)
    if answer is None:
        return 1
    previous, changes = _changes(config, website, answer, auto=args.auto)
    imported, log = apply_changes(
        own=config.hours or OpeningHours(),
        previous=previous,
        answer=answer,
        changes=changes,
        tz=config.branch.timezone,
        now=datetime.now(UTC),
        by="hours apply --auto" if args.auto else "hours apply",
    )
    header = (
        "# Written by `openbranch hours apply`: the hours imported from the library's website.\n"
        "# Do not edit: change the website, or the gateway config's own hours (which win).\n"
    )
    if not _written(website.imported_file, imported, header):
        return 1
    _show(answer, changes)
    held = len(changes) - len(log)
    print(
        f"{website.imported_file}: {len(log)} days applied, {held} held; "
        f"{len(imported.exceptions)} dated exceptions in force "
        "(the gateway takes them within a minute and audits each change)"
    )
    return 0


def hours_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hours = sub.add_parser("hours", help="opening hours from the library's website (DPL CMS)")
    hsub = hours.add_subparsers(dest="action", required=True)
    imp = hsub.add_parser(
        "import", help="read the website's hours for the coming weeks; show what differs"
    )
    imp.add_argument("config", type=Path)
    imp.add_argument("--from", dest="start", type=_first_day, help="first day (default: today)")
    imp.set_defaults(func=_hours_import)
    for name, helptext, func in (
        ("diff", "what the imported hours would change, day by day", _hours_diff),
        ("apply", "apply the imported hours within the limits", _hours_apply),
    ):
        p = hsub.add_parser(name, help=helptext)
        p.add_argument("config", type=Path)
        p.add_argument(
            "--auto",
            action="store_true",
            help="only what may be applied unattended: closures and shortening",
        )
        p.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openbranch", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True)
    for ep in sorted(entry_points(group="openbranch.cli"), key=lambda e: e.name):
        add: Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None] = ep.load()
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
