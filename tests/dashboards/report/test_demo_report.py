"""The report over the real demo's day (``demo_data``: simulated devices, a real gateway): from
the gateway's own local store, and from influxd holding the same lines, the same numbers; and
the branch's meters all show up with sane coverage.

The lines are copied from the store into a database of this test: the demo's own database may
lack the last hour, which the demo can stop before it is delivered (it stays in the outbox)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from dashboards.report import (
    InfluxSource,
    ReportOptions,
    StoreSource,
    build_report,
    load_branches,
    load_factor_table,
)
from dashboards.report.tables import report_tables
from edge import schema
from edge.outbox import Outbox
from tests.dashboards.conftest import DemoData
from tests.services import Influxd

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.services
def test_demo_day_same_from_influxd_and_store(
    demo_data: DemoData, influxd: Influxd, influx_db: str
) -> None:
    with Outbox(demo_data.summary["store"]) as outbox:
        influxd.write("\n".join(e.line for e in outbox.lines()), influx_db)
    day = demo_data.start.date()
    opts = ReportOptions(
        first=day,
        last=day,
        factors=load_factor_table(),
        branches=load_branches([ROOT / "examples" / "demo" / "branches.yaml"]),
    )
    with StoreSource(demo_data.summary["store"]) as store:
        local = build_report(store, opts)
    with InfluxSource(url=influxd.url, database=influx_db) as source:
        central = build_report(source, opts)
    assert [b.info.id for b in local.branches] == [demo_data.branch]
    totals = local.totals()
    # the demo has electricity meters and a heat meter; 18 hours from 06:00 close most hours
    assert totals[schema.Carrier.ELECTRICITY.value] > 0
    assert totals[schema.Carrier.DISTRICT_HEATING.value] > 0
    for m in local.months:
        assert m.hours_in_period == 24
        assert Decimal(0) < m.coverage <= 1
    assert local.branches[0].visitors is not None and local.branches[0].visitors > 0
    assert central.totals() == totals
    for a, b in zip(report_tables(local), report_tables(central), strict=True):
        if a.name not in ("Summary", "Method"):  # those name the source
            assert a.rows == b.rows, a.name
