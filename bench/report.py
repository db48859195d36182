"""The climate report over a year of hourly data: 40 branches x 3 carriers (~1M rows).

Builds ``energy_hourly`` lines for every hour of 2025 (8760) for each branch's electricity,
district heating and water meter (``Reading.to_line``, as the gateway writes them), commits them
to a local store (a real ``Outbox``), and times ``build_report`` over the whole year from it.
With ``--influx`` the same lines also go into a private influxd (``edge.devservers.Influxd``)
and the report is timed from there too, and both reports are checked to agree.

    .venv/bin/python bench/report.py [--branches 40] [--days 365] [--influx] [--html OUT]
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


def lines(branches: int, hours: int) -> list[str]:
    out = []
    for h in range(hours):
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
    parser.add_argument("--html", type=Path, help="write the HTML report here")
    args = parser.parse_args()
    hours = args.days * 24
    started = time.perf_counter()
    data = lines(args.branches, hours)
    print(f"{len(data):,} energy_hourly lines built in {time.perf_counter() - started:.1f} s")
    opts = options(args.branches, args.days)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "outbox.db"
        started = time.perf_counter()
        with Outbox(store, max_bytes=10**10) as outbox:
            for i in range(0, len(data), BATCH):
                outbox.append_rows([parse_line(line) for line in data[i : i + BATCH]])
        print(f"local store: committed in {time.perf_counter() - started:.1f} s")

        def from_store() -> EnergyReport:
            with StoreSource(store) as source:
                return build_report(source, opts)

        local = timed("the local store", from_store, len(data))
        total = sum(local.totals().values())
        print(
            f"  {len(local.branches)} branches, {len(local.months)} month rows,"
            f" {total:,.3f} kWh+m³, CO2e {local.co2e_location_kg:,.3f} kg"
        )
        if args.html:
            write_html(local, args.html)
            print(f"  wrote {args.html}")
        if args.influx:
            with Influxd() as server:
                server.start()
                server.query('CREATE DATABASE "bench"')
                started = time.perf_counter()
                for i in range(0, len(data), BATCH):
                    server.write("\n".join(data[i : i + BATCH]), "bench")
                print(f"influxd: written in {time.perf_counter() - started:.1f} s")

                def from_influx() -> EnergyReport:
                    with InfluxSource(url=server.url, database="bench") as source:
                        return build_report(source, opts)

                central = timed("influxd", from_influx, len(data))
                same = central.totals() == local.totals()
                print(f"  influxd and the local store agree: {same}")
                if not same:
                    raise SystemExit(1)


if __name__ == "__main__":
    main()
