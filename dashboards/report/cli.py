"""`openbranch report energy`: the energy and climate report as CSV, XLSX or HTML.

Reads ``energy_hourly`` (and occupancy for visitors) from InfluxDB (``--influx URL --db NAME``,
every branch) or from one gateway's local store (``--config GATEWAY.yaml`` or ``--store PATH``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from openbranch.dashboards.report.arguments import open_source, source_arguments
from openbranch.dashboards.report.energy import EnergyReport, ReportOptions, build_report
from openbranch.dashboards.report.factors import (
    DEFAULT_FACTORS,
    load_factor_table,
    load_hourly_factors,
)
from openbranch.dashboards.report.htmlpage import write_html
from openbranch.dashboards.report.inputs import load_branches, load_degree_days
from openbranch.dashboards.report.source import SourceError
from openbranch.dashboards.report.statistics_cli import statistics_command
from openbranch.dashboards.report.utility_cli import utility_command
from openbranch.dashboards.report.writers import write_csv, write_xlsx

__all__ = ["WRITERS", "report_commands", "run_energy"]

WRITERS: dict[str, Callable[[EnergyReport, Path], list[Path]]] = {
    "csv": write_csv,
    "xlsx": write_xlsx,
    "html": write_html,
}


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is below 0")
    return value


def run_energy(args: argparse.Namespace) -> int:
    if args.to < args.from_:
        print(f"--to {args.to} is before --from {args.from_}", file=sys.stderr)
        return 2
    branches = load_branches(args.branches or [])
    source, gateway_branch, gateway_info = open_source(args)
    try:
        only = list(args.branch or [])
        if gateway_branch is not None:
            only = only or [gateway_branch]
            if gateway_info is not None and gateway_branch not in branches:
                branches[gateway_branch] = gateway_info
        options = ReportOptions(
            first=args.from_,
            last=args.to,
            factors=load_factor_table(args.factors),
            branches=branches,
            only=only or None,
            default_timezone=gateway_info.timezone if gateway_info else "Europe/Copenhagen",
            hourly=load_hourly_factors(args.hourly_factors) if args.hourly_factors else None,
            market_factor=args.market_factor,
            market_source=args.market_source or "",
            degree_days=load_degree_days(args.degree_days) if args.degree_days else None,
            normal_degree_days=args.normal_degree_days,
            baseline_year=args.baseline,
        )
        started = time.perf_counter()
        report = build_report(source, options)
        elapsed = time.perf_counter() - started
    finally:
        source.close()
    out = args.out or Path(f"energy-report-{args.from_}-{args.to}.{args.format}")
    written = WRITERS[args.format](report, out)
    print(
        f"report: {len(report.branches)} branches, {len(report.months)} month rows,"
        f" {sum(q.hours_present for q in report.quality)} meter-hours in {elapsed:.2f} s"
    )
    for path in written:
        print(f"wrote {path}")
    return 0


def _energy(args: argparse.Namespace) -> int:
    try:
        return run_energy(args)
    except SourceError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2


def report_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="energy and climate (CO2e) reports")
    kinds = report.add_subparsers(dest="report_command", required=True)
    p = kinds.add_parser(
        "energy",
        help="per branch, month and carrier: kWh, coverage, CO2e, indicators, data quality",
    )
    p.add_argument(
        "--from",
        dest="from_",
        type=date.fromisoformat,
        required=True,
        help="first local day (YYYY-MM-DD)",
    )
    p.add_argument(
        "--to", type=date.fromisoformat, required=True, help="last local day, included (YYYY-MM-DD)"
    )
    p.add_argument("--format", choices=sorted(WRITERS), default="html")
    p.add_argument("--out", type=Path, help="file to write (default energy-report-FROM-TO.EXT)")
    p.add_argument("--branch", action="append", help="only this branch (repeatable)")
    source_arguments(p)
    inp = p.add_argument_group("inputs")
    inp.add_argument(
        "--branches",
        type=Path,
        action="append",
        help="inventory-shaped YAML with floor areas, price areas, heat suppliers"
        " (repeatable; e.g. examples/inventories/aarhus.yaml)",
    )
    inp.add_argument(
        "--factors",
        type=Path,
        default=DEFAULT_FACTORS,
        help="emission factor table (default: the shipped one)",
    )
    inp.add_argument(
        "--hourly-factors",
        type=Path,
        help="hourly electricity CO2e CSV (HourUTC, PriceArea, CO2Emission g/kWh)",
    )
    inp.add_argument(
        "--market-factor",
        type=_decimal,
        metavar="G_PER_KWH",
        help="the electricity supplier's factor: adds the market-based figure",
    )
    inp.add_argument("--market-source", help="where the supplier factor comes from")
    inp.add_argument(
        "--degree-days", type=Path, help="CSV: date, degree_days (base 17 °C) or mean_temp_c"
    )
    inp.add_argument(
        "--normal-degree-days",
        type=_decimal,
        metavar="DD",
        help="a normal year's degree days, to normalise heat",
    )
    inp.add_argument(
        "--baseline", type=int, metavar="YEAR", help="compare with the same months of this year"
    )
    p.set_defaults(func=_energy)
    statistics_command(kinds)
    utility_command(kinds)
