"""`openbranch provision ...`: render, plan, apply and rotate what the inventory describes."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from openbranch.dashboards import grafana
from openbranch.edge.core.registry import default_registry
from openbranch.provisioning import files as owned
from openbranch.provisioning import influx
from openbranch.provisioning.inventory import (
    Branch,
    Inventory,
    inventory_json_schema,
    load_inventory,
)
from openbranch.provisioning.render import FILE_MODES, RenderError, fleet_of, render, user_of
from openbranch.provisioning.secrets import Secrets, SecretsError

__all__ = ["diff", "progress_bar", "provision_commands"]


def _load(path: Path) -> Inventory:
    return load_inventory(path, check_device=default_registry().check_device)


#: Fleets from this many branches get a progress bar (on stderr) while they render.
PROGRESS_FROM = 20


def progress_bar(branches: list[Branch]) -> tqdm[Branch]:
    """A bar over the branches as ``render`` renders them, one step per branch."""
    return tqdm(
        branches,
        desc="rendering",
        unit="branch",
        file=sys.stderr,
        disable=len(branches) < PROGRESS_FROM,
    )


def _rendered(args: argparse.Namespace, *, create: bool = True) -> tuple[Inventory, Rendered]:
    inventory = _load(args.inventory)
    secrets = Secrets(args.secrets, create=create)
    files = render(inventory, secrets, progress=progress_bar)
    return inventory, Rendered(files=files, secrets=secrets)


@dataclass(frozen=True)
class Rendered:
    """Rendered files and the secrets they were rendered with."""

    files: Mapping[str, str]
    secrets: Secrets


def diff(files: Mapping[str, str], out: Path) -> dict[str, list[str]]:
    """Files added, changed and removed against what a render wrote in ``out`` before."""
    return owned.plan(files, out, FILE_MODES).as_dict()


def _print_diff(changes: dict[str, list[str]]) -> int:
    total = sum(len(v) for v in changes.values())
    if not total:
        print("no changes")
        return 0
    for kind, names in changes.items():
        for name in names:
            print(f"{kind:>8}  {name}")
    return total


def _write(files: Mapping[str, str], out: Path) -> dict[str, list[str]]:
    changes = owned.plan(files, out, FILE_MODES)
    owned.write(files, out, changes, FILE_MODES)
    return changes.as_dict()


def _render(args: argparse.Namespace) -> int:
    inventory, rendered = _rendered(args)
    _write(rendered.files, args.out)
    print(
        f"{args.inventory}: {len(inventory.branches)} branches,"
        f" {len(rendered.files)} files in {args.out}"
    )
    return 0


def _plan(args: argparse.Namespace) -> int:
    _, rendered = _rendered(args, create=False)
    _print_diff(diff(rendered.files, args.out))
    for name in rendered.secrets.missing:
        print(f"  secret  {name} (apply creates it)")  # the name, never a value
    return 0


def _apply(args: argparse.Namespace) -> int:
    inventory, rendered = _rendered(args)
    _print_diff(diff(rendered.files, args.out))
    _write(rendered.files, args.out)
    if args.grafana:
        token = Path(args.grafana_token_file).read_text(encoding="utf-8").strip()
        pushed = grafana.push_fleet(args.grafana, token, fleet_of(inventory))
        for line in pushed or ["Grafana: no changes"]:
            print(line)
    if args.influxdb:
        areas = {b.id: b.floor_area_m2 for b in inventory.branches}
        for sink in inventory.defaults.sinks:
            if sink.type == "influxdb_v1":
                setup = influx.setup_for(sink.database, floor_areas=areas)
                for line in influx.apply(args.influxdb, setup) or ["InfluxDB: no changes"]:
                    print(line)
    return 0


def _purge_entries(args: argparse.Namespace) -> int:
    """The central copy of the entry records kept no longer than the inventory says."""
    inventory = _load(args.inventory)
    days = inventory.defaults.entry_retention_days
    now_ns = time.time_ns()
    for sink in inventory.defaults.sinks:
        if sink.type == "influxdb_v1":
            url = args.influxdb or sink.url
            try:
                deleted = influx.purge_personal(url, sink.database, days=days, now_ns=now_ns)
            except (OSError, RuntimeError) as exc:  # the unit fails: systemctl --failed shows it
                print(f"InfluxDB {url} {sink.database}: entry records not purged: {exc}")
                return 1
            print(f"InfluxDB {sink.database}: {deleted} entry records over {days} days deleted")
    return 0


def _backfill(args: argparse.Namespace) -> int:
    """Roll up hours and days the continuous queries no longer look at: a database back from
    an outage longer than their window (seven days; two hours for the counters; eight days for
    the days), or history loaded before they existed (docs/SCALE.md)."""
    inventory = _load(args.inventory)
    start = datetime.fromisoformat(args.since)
    if start.tzinfo is None:
        print(f"provision backfill: --since {args.since!r} needs a UTC offset (e.g. +00:00)")
        return 2
    start_ns, end_ns = int(start.timestamp() * 1e9), time.time_ns()
    areas = {b.id: b.floor_area_m2 for b in inventory.branches}
    for sink in inventory.defaults.sinks:
        if sink.type == "influxdb_v1":
            url = args.influxdb or sink.url
            setup = influx.setup_for(sink.database, floor_areas=areas)
            try:
                written = influx.backfill(url, setup, start_ns, end_ns)
            except (OSError, RuntimeError) as exc:
                print(f"InfluxDB {url} {sink.database}: not rolled up: {exc}")
                return 1
            print(
                f"InfluxDB {sink.database}: {written} points rolled up (hours, days) since {start}"
            )
    return 0


def _schema(_args: argparse.Namespace) -> int:
    print(inventory_json_schema())
    return 0


def _rotate(args: argparse.Namespace) -> int:
    inventory = _load(args.inventory)
    branch = next((b for b in inventory.branches if b.id == args.branch), None)
    if branch is None:
        print(f"no branch {args.branch!r} in {args.inventory}")
        return 2
    secrets = Secrets(args.secrets)
    for name in (f"mqtt/{user_of(branch)}", f"control/{branch.id}"):
        secrets.rotate(name)
        print(f"rotated {name} (install it on the gateway, then apply)")  # never the value
    return 0


def _refusing(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command that prints a folder's or a value's problem on one line and exits 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (owned.FilesError, SecretsError, RenderError) as exc:
            print(f"provision {args.action}: {exc}", file=sys.stderr)
            return 2

    return run


def provision_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    provision = sub.add_parser("provision", help="render the fleet from its inventory")
    psub = provision.add_subparsers(dest="action", required=True)
    for name, func, helptext in (
        ("render", _render, "write gateway configs, broker accounts, ACLs, InfluxDB setup"),
        ("plan", _plan, "show what would change against the last render, writing nothing"),
        ("apply", _apply, "render, write what changed, and apply to live servers"),
    ):
        cmd = psub.add_parser(name, help=helptext)
        cmd.add_argument("inventory", type=Path)
        cmd.add_argument("--out", type=Path, default=Path("var/render"))
        cmd.add_argument(
            "--secrets",
            type=Path,
            default=Path("var/secrets"),
            help="the operator's secrets folder (created 0700; an existing one keeps its mode)",
        )
        if name == "apply":
            cmd.add_argument("--influxdb", help="InfluxDB 1.x URL to set up")
            cmd.add_argument("--grafana", help="Grafana URL to push the dashboards to")
            cmd.add_argument("--grafana-token-file", help="a file holding a Grafana API token")
        cmd.set_defaults(func=_refusing(func))
    purge = psub.add_parser(
        "purge-entries",
        help="delete entry records (card pseudonyms) past the inventory's retention from InfluxDB",
    )
    purge.add_argument("inventory", type=Path)
    purge.add_argument("--influxdb", help="InfluxDB 1.x URL (default: each sink's own)")
    purge.set_defaults(func=_refusing(_purge_entries))
    backfill = psub.add_parser(
        "backfill",
        help="roll up hours and days older than the continuous queries look (after an outage)",
    )
    backfill.add_argument("inventory", type=Path)
    backfill.add_argument("--since", required=True, help="ISO time with its offset")
    backfill.add_argument("--influxdb", help="InfluxDB 1.x URL (default: each sink's own)")
    backfill.set_defaults(func=_refusing(_backfill))
    schema = psub.add_parser("schema", help="print the JSON Schema of inventories")
    schema.set_defaults(func=_schema)
    rotate = psub.add_parser("rotate", help="new credentials for one branch's gateway")
    rotate.add_argument("inventory", type=Path)
    rotate.add_argument("branch")
    rotate.add_argument("--secrets", type=Path, default=Path("var/secrets"))
    rotate.set_defaults(func=_refusing(_rotate))
