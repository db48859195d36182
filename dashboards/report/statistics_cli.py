"""`openbranch report statistics --year Y`: the annual library statistics as CSV or XLSX."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from openbranch.dashboards.report.arguments import open_source, source_arguments
from openbranch.dashboards.report.source import SourceError
from openbranch.dashboards.report.statistics import (
    BranchCalendar,
    build_statistics,
    load_branch_calendars,
    statistics_tables,
)
from openbranch.dashboards.report.writers import write_tables_csv, write_tables_xlsx
from openbranch.edge.core.config import load_gateway_config
from openbranch.edge.core.yamlsource import ConfigError

__all__ = ["run_statistics", "statistics_command"]


def run_statistics(args: argparse.Namespace) -> int:
    calendars = load_branch_calendars(args.branches or [])
    source, gateway_branch, _info = open_source(args)
    try:
        only = list(args.branch or [])
        if gateway_branch is not None:
            only = only or [gateway_branch]
            if gateway_branch not in calendars:
                config = load_gateway_config(args.config)
                calendars[gateway_branch] = BranchCalendar(
                    id=config.branch.id,
                    name=config.branch.name,
                    timezone=config.branch.timezone,
                    hours=config.hours,
                )
        if not only and not calendars:
            raise SourceError("give the branches: --branches INVENTORY.yaml or --config")
        started = time.perf_counter()
        rows = build_statistics(source, calendars, args.year, only=only or None)
        elapsed = time.perf_counter() - started
        tables = statistics_tables(rows, args.year, source.description)
    finally:
        source.close()
    out = args.out or Path(f"library-statistics-{args.year}.{args.format}")
    if args.format == "csv":
        written = write_tables_csv(tables, out, main="Statistics")
    else:
        written = write_tables_xlsx(tables, out)
    print(f"statistics {args.year}: {len(rows)} branches in {elapsed:.2f} s")
    for path in written:
        print(f"wrote {path}")
    return 0


def _statistics(args: argparse.Namespace) -> int:
    try:
        return run_statistics(args)
    except (SourceError, ConfigError) as exc:
        print(f"report statistics: {exc}", file=sys.stderr)
        return 2


def statistics_command(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = kinds.add_parser(
        "statistics",
        help="the annual library statistics: visits, staffed and self-service opening hours"
        " (calendar and recorded), per branch",
    )
    p.add_argument("--year", type=int, required=True, help="the calendar year (e.g. 2026)")
    p.add_argument("--format", choices=("csv", "xlsx"), default="xlsx")
    p.add_argument("--out", type=Path, help="file to write (default library-statistics-YEAR.EXT)")
    p.add_argument("--branch", action="append", help="only this branch (repeatable)")
    source_arguments(p)
    p.add_argument(
        "--branches",
        type=Path,
        action="append",
        help="inventory-shaped YAML with the branches' hours (repeatable;"
        " e.g. examples/inventories/aarhus.yaml)",
    )
    p.set_defaults(func=_statistics)
