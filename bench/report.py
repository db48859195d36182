"""The climate report over a year of hourly data: 40 branches x 3 carriers (~1M rows), or a
country's 400 (``--branches 400``, ~10.5M rows).

Builds ``energy_hourly`` lines for every hour of 2025 (8760) for each branch's electricity,
district heating and water meter (``Reading.to_line``, as the gateway writes them), a day of
the fleet at a time (never the whole year in memory), commits them to a local store (a real
``Outbox``; ``--no-store`` skips it) and times ``build_report`` over the whole year from it.
With ``--influx`` the same lines also go into a private influxd (``edge.demo.servers.Influxd``)
and the report is timed from there: summed by the server (``InfluxSource(summed=True)``,
decision 100; targets: 40 branch-years < 2 s, 400 < 20 s) and, with ``--rows``, every hour
read as before; every report is checked to agree with the others.

    nice -n 15 .venv/bin/python bench/report.py [--branches 40] [--days 365] [--influx]
        [--rows] [--no-store] [--html OUT]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from openbranch.dashboards.report import (
    BranchInfo,
    InfluxSource,
    ReportOptions,
    StoreSource,
    build_report,
    load_factor_table,
    write_html,
)
from openbranch.dashboards.report.energy import EnergyReport
from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading
from openbranch.edge.demo.servers import Influxd
from openbranch.edge.telemetry.outbox import Outbox, parse_line

START = datetime(2024, 12, 31, 23, tzinfo=UTC)  # 1 January 2025 00:00 CET
CARRIERS = tuple(c.value for c in schema.Carrier)
MEASURED = schema.HOURLY_QUALITY.choices[0]
BATCH = 50_000


def day_lines(branches: int, day: int) -> list[str]:
    """Every branch's 3 meters' hours of one day."""
    out = []
    for h in range(day * 24, day * 24 + 24):
        t = START + timedelta(hours=h)
        for b in range(branches):
            for c, carrier in enumerate(CARRIERS):
                out.append(
                    Reading(
                        branch=f"branch-{b:02d}",
                        device=f"meter-{c}",
                        measurement=schema.ENERGY_HOURLY,
                        fields={
                            schema.HOURLY_CONSUMPTION.key: round(1 + (b + c + h % 24) * 0.25, 3),
                            schema.HOURLY_QUALITY.key: MEASURED,
                            schema.HOURLY_COVERAGE.key: 1.0,
                        },
                        tags={schema.Tag.CARRIER.value: carrier},
                        time=t,
                    ).to_line()
                )
    return out


def options(branches: int, days: int) -> ReportOptions:
    info = {
        f"branch-{b:02d}": BranchInfo(
            id=f"branch-{b:02d}",
            name=f"Branch {b:02d}",
            price_area="DK1" if b % 2 else "DK2",
            heat_supplier="Kredsløb" if b % 2 else "HOFOR",
            floor_area_m2=None if b == 0 else Decimal(400 + 25 * b),
        )
        for b in range(branches)
    }
    first = date(2025, 1, 1)
    return ReportOptions(
        first=first,
        last=first + timedelta(days=days - 1),
        factors=load_factor_table(),
        branches=info,
    )


def timed(label: str, make: object, rows: int) -> EnergyReport:
    started = time.perf_counter()
    report: EnergyReport = make()  # type: ignore[operator]
    elapsed = time.perf_counter() - started
    print(f"report from {label}: {elapsed:.2f} s, {rows / elapsed:,.0f} rows/s")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=40)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--influx", action="store_true", help="also through a private influxd")
    parser.add_argument("--rows", action="store_true", help="from influxd also hour by hour")
    parser.add_argument("--no-store", action="store_true", help="skip the local store")
    parser.add_argument("--html", type=Path, help="write the HTML report here")
    args = parser.parse_args()
    rows = args.branches * args.days * 24 * len(CARRIERS)
    opts = options(args.branches, args.days)
    reports: dict[str, EnergyReport] = {}
    with tempfile.TemporaryDirectory() as tmp, Influxd() as server:
        store = Path(tmp) / "outbox.db"
        if args.influx:
            server.start()
            server.query('CREATE DATABASE "bench"')
        started = time.perf_counter()
        with Outbox(store, max_bytes=10**11) as outbox:
            for day in range(args.days):
                data = day_lines(args.branches, day)
                if not args.no_store:
                    outbox.append_rows([parse_line(line) for line in data])
                if args.influx:
                    for i in range(0, len(data), BATCH):
                        server.write("\n".join(data[i : i + BATCH]), "bench")
        where = " and ".join(
            x for x, on in (("the local store", not args.no_store), ("influxd", args.influx)) if on
        )
        print(
            f"{rows:,} energy_hourly lines ({args.branches} branches x {args.days} days x 3"
            f" meters) written to {where} in {time.perf_counter() - started:.0f} s"
        )
        if not args.no_store:

            def from_store() -> EnergyReport:
                with StoreSource(store) as source:
                    return build_report(source, opts)

            reports["the local store"] = timed("the local store, every hour", from_store, rows)
        if args.influx:

            def from_influx(summed: bool) -> EnergyReport:
                with InfluxSource(url=server.url, database="bench", summed=summed) as source:
                    return build_report(source, opts)

            if args.rows:
                reports["influxd, hours"] = timed(
                    "influxd, every hour", lambda: from_influx(False), rows
                )
            years = args.branches * args.days / 365
            target = 2.0 * years / 40  # 40 branch-years < 2 s, 400 < 20 s
            started = time.perf_counter()
            reports["influxd, summed"] = timed(
                "influxd, summed by the server", lambda: from_influx(True), rows
            )
            elapsed = time.perf_counter() - started
            print(
                f"  target for {years:,.0f} branch-years: < {target:.2f} s:"
                f" {'met' if elapsed < target else 'NOT met'}"
            )
        first = next(iter(reports.values()))
        total = sum(first.totals().values())
        print(
            f"  {len(first.branches)} branches, {len(first.months)} month rows,"
            f" {total:,.3f} kWh+m³, CO2e {first.co2e_location_kg:,.3f} kg"
        )
        same = all(
            r.totals() == first.totals()
            and r.co2e_location_kg == first.co2e_location_kg
            and [(q.hours_present, q.missing_runs) for q in r.quality]
            == [(q.hours_present, q.missing_runs) for q in first.quality]
            for r in reports.values()
        )
        print(f"  {' / '.join(reports)}: agree: {same}")
        if args.html:
            write_html(first, args.html)
            print(f"  wrote {args.html}")
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
