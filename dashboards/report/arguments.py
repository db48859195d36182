"""The source arguments every report command shares, and the source they open."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from openbranch.dashboards.report.inputs import BranchInfo
from openbranch.dashboards.report.source import InfluxSource, Source, SourceError, StoreSource
from openbranch.edge.core.config import load_gateway_config

__all__ = ["influx_arguments", "open_source", "source_arguments"]


def influx_arguments(
    group: argparse._ArgumentGroup | argparse.ArgumentParser, *, required: bool = False
) -> None:
    """``--influx URL --db NAME [--username U] [--password-env VAR]``."""
    group.add_argument(
        "--influx", metavar="URL", required=required, help="InfluxDB URL (InfluxQL, every branch)"
    )
    group.add_argument("--db", required=required, help="InfluxDB database")
    group.add_argument("--username", help="InfluxDB user")
    group.add_argument(
        "--password-env", metavar="VAR", help="environment variable with the password"
    )


def source_arguments(p: argparse.ArgumentParser) -> None:
    """``--influx URL --db NAME`` (every branch), ``--config GATEWAY.yaml`` or ``--store PATH``."""
    src = p.add_argument_group("source (one of)")
    influx_arguments(src)
    src.add_argument("--config", type=Path, help="a gateway config: its local store and branch")
    src.add_argument("--store", type=Path, help="a gateway's local store (outbox SQLite file)")


def open_source(args: argparse.Namespace) -> tuple[Source, str | None, BranchInfo | None]:
    """The source, the branch it is limited to (a gateway's), and that branch's info."""
    if args.influx:
        if not args.db:
            raise SourceError("--influx needs --db NAME")
        password = os.environ.get(args.password_env) if args.password_env else None
        return (
            InfluxSource(
                url=args.influx, database=args.db, username=args.username, password=password
            ),
            None,
            None,
        )
    if args.config:
        config = load_gateway_config(args.config)
        store = args.store or Path(config.store.path)
        if not store.is_absolute() and not store.exists():
            store = args.config.parent / store
        info = BranchInfo(
            id=config.branch.id, name=config.branch.name, timezone=config.branch.timezone
        )
        return StoreSource(store), config.branch.id, info
    if args.store:
        return StoreSource(args.store), None, None
    raise SourceError(
        "give a source: --influx URL --db NAME, --config GATEWAY.yaml or --store PATH"
    )
