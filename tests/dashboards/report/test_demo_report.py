"""The report over the real demo's day (``demo_data``: simulated devices, a real gateway): from
the gateway's own local store, and from influxd holding the same lines, the same numbers; and
the branch's meters all show up with sane coverage.

The central report reads the database the demo's gateway wrote to: it delivered every line
(the gateway's stop gives its drainers a grace period to send the last commit), so the two
sources hold the same readings."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from openbranch.dashboards.report import (
    InfluxSource,
    ReportOptions,
    StoreSource,
    build_report,
    load_branches,
    load_factor_table,
)
from openbranch.dashboards.report.tables import report_tables
from openbranch.edge.core import schema
from tests.dashboards.conftest import DemoData
from tests.services import Influxd

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.services
def test_demo_day_same_from_influxd_and_store(
    demo_data: DemoData, influxd_session: Influxd
) -> None:
    day = demo_data.start.date()
    opts = ReportOptions(
        first=day,
        last=day,
        factors=load_factor_table(),
        branches=load_branches([ROOT / "examples" / "demo" / "branches.yaml"]),
    )
    with StoreSource(demo_data.summary["store"]) as store:
        local = build_report(store, opts)
    with InfluxSource(url=influxd_session.url, database=demo_data.database) as source:
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
