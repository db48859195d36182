"""`openbranch report utility`: import the utility's hours from Eloverblik into InfluxDB and
reconcile them with the gateways' meters, per metering point and month (CSV or XLSX)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import influxdb

from openbranch.dashboards.report.arguments import influx_arguments
from openbranch.dashboards.report.inputs import load_branches
from openbranch.dashboards.report.source import InfluxSource, SourceError, influx_client
from openbranch.dashboards.report.utility import (
    ImportSummary,
    InfluxAlerts,
    drift_alerts,
    import_hours,
    reconcile,
    utility_tables,
)
from openbranch.dashboards.report.writers import write_tables_csv, write_tables_xlsx
from openbranch.edge.core import schema
from openbranch.edge.core.yamlsource import ConfigError
from openbranch.integrations.eloverblik import (
    EloverblikClient,
    EloverblikError,
    EloverblikFile,
    RefreshTokenRejected,
    load_eloverblik,
)

__all__ = ["run_utility", "utility_command"]


def run_utility(args: argparse.Namespace, *, now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    config = load_eloverblik(args.config)
    settings = config.eloverblik
    timezones = {b.id: b.timezone for b in load_branches(args.branches or []).values()}
    tz = ZoneInfo("Europe/Copenhagen")
    last = args.to or now.astimezone(tz).date() - timedelta(days=1)
    first = args.from_ or last - timedelta(days=settings.days_back - 1)
    if last < first:
        print(f"--to {last} is before --from {first}", file=sys.stderr)
        return 2
    password = os.environ.get(args.password_env) if args.password_env else None
    login = {"url": args.influx, "database": args.db, "username": args.username}
    client = influx_client(**login, password=password)
    alerts = InfluxAlerts(client, now=now)
    imported: list[ImportSummary] = []
    try:
        if not args.no_import:
            imported = _import(config, client, alerts, first=first, last=last, tz=tz)
        source = InfluxSource(password=password, **login)
        try:
            rows = reconcile(source, config, first, last, timezones)
        finally:
            source.close()
        raised = drift_alerts(rows, alerts)
        tables = utility_tables(rows, source.description, imported)
    finally:
        client.close()
    out = args.out or Path(f"utility-reconciliation-{first}-{last}.{args.format}")
    if args.format == "csv":
        written = write_tables_csv(tables, out, main="Reconciliation")
    else:
        written = write_tables_xlsx(tables, out)
    drifting = sum(r.drift for r in rows)
    print(f"reconciled {len(rows)} month rows, {drifting} beyond the margin, {len(raised)} alerts")
    for path in written:
        print(f"wrote {path}")
    return 0


def _import(
    config: EloverblikFile,
    client: influxdb.InfluxDBClient,
    alerts: InfluxAlerts,
    *,
    first: date,
    last: date,
    tz: ZoneInfo,
) -> list[ImportSummary]:
    """The import, and the ``utility_token`` alert raised (a refused refresh token) or
    cleared (accepted again)."""
    settings = config.eloverblik
    branches = sorted({p.branch for p in config.metering_points})
    try:
        token = settings.refresh_token.resolve()
    except LookupError as exc:
        raise EloverblikError(f"the Eloverblik refresh token: {exc}") from None
    eloverblik = EloverblikClient(refresh_token=token, url=str(settings.url))
    try:
        imported = import_hours(eloverblik, config, client, first=first, last=last, tz=tz)
    except RefreshTokenRejected as exc:
        for branch in branches:
            alerts.write(branch, schema.UTILITY_TOKEN, str(exc), severity="critical", active=True)
        raise
    for branch in branches:
        if alerts.active(branch, schema.UTILITY_TOKEN):
            alerts.write(
                branch,
                schema.UTILITY_TOKEN,
                "the Eloverblik refresh token is accepted again",
                severity="info",
                active=False,
            )
    for s in imported:
        late = f", still incomplete: {len(s.incomplete_days)} days" if s.incomplete_days else ""
        print(f"imported {s.hours} hours of {s.metering_point} ({s.branch}){late}")
    return imported


def _utility(args: argparse.Namespace) -> int:
    try:
        return run_utility(args)
    except (SourceError, ConfigError, EloverblikError) as exc:
        print(f"report utility: {exc}", file=sys.stderr)
        return 2


def utility_command(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = kinds.add_parser(
        "utility",
        help="the utility's meter: import Eloverblik's hours and reconcile them with the"
        " gateways' meters per month",
    )
    p.add_argument(
        "--config",
        type=Path,
        required=True,
        help="the Eloverblik file (integrations/eloverblik/sample.yaml)",
    )
    p.add_argument(
        "--from",
        dest="from_",
        type=date.fromisoformat,
        help="first local day (default: days_back days before --to)",
    )
    p.add_argument(
        "--to", type=date.fromisoformat, help="last local day, included (default: yesterday)"
    )
    p.add_argument(
        "--no-import", action="store_true", help="reconcile what is stored; ask Eloverblik nothing"
    )
    p.add_argument("--format", choices=("csv", "xlsx"), default="xlsx")
    p.add_argument("--out", type=Path, help="file to write")
    influx_arguments(p, required=True)
    p.add_argument(
        "--branches",
        type=Path,
        action="append",
        help="inventory-shaped YAML for the branches' time zones (default Europe/Copenhagen)",
    )
    p.set_defaults(func=_utility)
