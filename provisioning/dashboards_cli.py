"""`openbranch dashboards build|push`: the dashboards and alert rules as files, or sent to a
Grafana through its HTTP API (dashboards, then alert rules into the same folder).

With ``--inventory`` the build knows the municipality's branches (names, floor areas, price
area); without it, it builds for every branch in the database, with a floor-area variable.
It lives in provisioning because it reads the inventory; the dashboards themselves never
import provisioning (no circle between the two packages).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from openbranch.dashboards.build import ALERT_RULES_FILE, build
from openbranch.dashboards.model import Fleet
from openbranch.edge.core.registry import default_registry
from openbranch.provisioning.inventory import load_inventory
from openbranch.provisioning.render import fleet_of

__all__ = ["dashboards_commands"]

TOKEN_ENV = "OPENBRANCH_GRAFANA_TOKEN"  # noqa: S105 - the variable's name


def _fleet(inventory: Path | None) -> Fleet:
    if inventory is None:
        return Fleet(id="all", name="OpenBranch")
    return fleet_of(load_inventory(inventory, check_device=default_registry().check_device))


def _build(args: argparse.Namespace) -> int:
    fleet = _fleet(args.inventory)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    files = build(fleet)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    boards = sum(1 for n in files if n != ALERT_RULES_FILE)
    print(f"{fleet.name}: {boards} dashboards and {ALERT_RULES_FILE} in {out}")
    return 0


def _token(args: argparse.Namespace) -> str:
    """From a file or the environment, never the command line (other users see it in ps)."""
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SystemExit(f"--token-file {args.token_file}: {exc.strerror}") from None
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise SystemExit(f"a Grafana token: --token-file or ${TOKEN_ENV}")
    return token


def _push(args: argparse.Namespace) -> int:
    from openbranch.dashboards import grafana  # noqa: PLC0415 - the one HTTP client for Grafana

    changes = grafana.push_fleet(args.url, _token(args), _fleet(args.inventory))
    for line in changes or ["Grafana: no changes"]:
        print(line)
    return 0


def dashboards_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dashboards = sub.add_parser("dashboards", help="Grafana dashboards and alert rules")
    dsub = dashboards.add_subparsers(dest="action", required=True)
    build_cmd = dsub.add_parser("build", help="write one JSON per dashboard and the alert rules")
    build_cmd.add_argument("--out", type=Path, required=True)
    push_cmd = dsub.add_parser("push", help="create or update dashboards and alert rules")
    push_cmd.add_argument("--url", required=True, help="Grafana's base URL")
    push_cmd.add_argument(
        "--token-file", help=f"a file holding the API token (or ${TOKEN_ENV}; never an argument)"
    )
    for cmd in (build_cmd, push_cmd):
        cmd.add_argument("--inventory", type=Path, help="the fleet inventory (branches, areas)")
    build_cmd.set_defaults(func=_build)
    push_cmd.set_defaults(func=_push)
