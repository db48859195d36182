"""The `openbranch` command line.

Subcommand groups come from the ``openbranch.cli`` entry point group (pyproject.toml): each is
a function that adds its parser to the subparsers. Edge provides `gateway`; other packages add
theirs without edge importing them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from edge.clock import SystemClock
from edge.config import GatewayConfig, gateway_json_schema, load_gateway_config
from edge.gateway import Gateway
from edge.registry import BuildContext, default_registry
from edge.store import LocalStore
from edge.yamlsource import ConfigError

__all__ = ["gateway_commands", "load_checked", "main"]

Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


def load_checked(path: Path) -> GatewayConfig:
    """A gateway config validated against the models and the installed integrations."""
    return load_gateway_config(path, check_device=default_registry().check_device)


def _check(args: argparse.Namespace) -> int:
    config = load_checked(args.config)
    registry = default_registry()
    context = BuildContext(branch=config.branch.id, clock=SystemClock())
    print(
        f"{args.config}: branch {config.branch.id} ({config.branch.name}), "
        f"{len(config.devices)} devices: OK"
    )
    for device in config.devices:
        print("  " + registry.build(device, context).describe_plan())
    return 0


def _schema(_: argparse.Namespace) -> int:
    print(gateway_json_schema())
    return 0


def _run(args: argparse.Namespace) -> int:
    config = load_checked(args.config)
    store = LocalStore(args.store or config.store.path)
    gateway = Gateway(config=config, registry=default_registry(), clock=SystemClock(), store=store)

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
        store.close()
    print(f"stopped: {gateway.accepted} readings accepted into {store.path}")
    return 0


def gateway_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = sub.add_parser("gateway", help="run and check a branch gateway")
    gsub = gateway.add_subparsers(dest="action", required=True)
    check = gsub.add_parser("check", help="validate a config and print each device's plan")
    check.add_argument("config", type=Path)
    check.set_defaults(func=_check)
    run = gsub.add_parser("run", help="poll the configured devices until SIGTERM or SIGINT")
    run.add_argument("config", type=Path)
    run.add_argument("--store", type=Path, help="local store path (default: from the config)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.set_defaults(func=_run)
    schema = gsub.add_parser("schema", help="print the JSON Schema of gateway configs")
    schema.set_defaults(func=_schema)


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
