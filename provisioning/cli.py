"""`openbranch provision ...`: render what the inventory describes."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from edge.registry import default_registry
from provisioning.inventory import load_inventory
from provisioning.render import render
from provisioning.secrets import Secrets

__all__ = ["provision_commands"]


def _render(args: argparse.Namespace) -> int:
    inventory = load_inventory(args.inventory, check_device=default_registry().check_device)
    files = render(inventory, Secrets(args.secrets))
    for name, text in tqdm(sorted(files.items()), desc="writing", unit="file", leave=False):
        path = args.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"{args.inventory}: {len(inventory.branches)} branches, {len(files)} files in {args.out}")
    return 0


def provision_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    provision = sub.add_parser("provision", help="render the fleet from its inventory")
    psub = provision.add_subparsers(dest="action", required=True)
    render_cmd = psub.add_parser("render", help="gateway configs, broker accounts and ACLs")
    render_cmd.add_argument("inventory", type=Path)
    render_cmd.add_argument("--out", type=Path, required=True)
    render_cmd.add_argument(
        "--secrets",
        type=Path,
        default=Path("var/secrets"),
        help="the operator's secrets folder (created 0700)",
    )
    render_cmd.set_defaults(func=_render)
