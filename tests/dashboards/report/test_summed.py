"""The energy report from InfluxDB's own sums (``InfluxSource(summed=True)``, decision 100):
each meter's months summed by the server, its runs counted by the server, and the same report
as from every hour of the local store (the hand-made March: gaps, interpolated runs, a meter
reset, two branches; its values are exact in binary, so the sums agree to the last digit)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from openbranch.dashboards.report import InfluxSource, build_report
from openbranch.dashboards.report.tables import report_tables
from openbranch.edge.telemetry.outbox import Outbox
from tests.dashboards.report import handmade
from tests.dashboards.report.handmade import EL
from tests.dashboards.report.test_energy_report import options, report_from_store
from tests.services import Influxd


def _store(tmp_path: Path) -> Path:
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        outbox.append_lines(handmade.march_lines())
    return path


@pytest.mark.services
@pytest.mark.parametrize("first", [date(2026, 3, 1), date(2026, 3, 15)])
def test_server_sums_give_the_rows_report(
    tmp_path: Path, influxd: Influxd, influx_db: str, first: date
) -> None:
    influxd.write("\n".join(handmade.march_lines()), influx_db)
    opts = options(handmade.write_inputs(tmp_path), first=first)
    local = report_from_store(_store(tmp_path), opts)
    with InfluxSource(url=influxd.url, database=influx_db, summed=True) as source:
        summed = build_report(source, opts)
    for a, b in zip(report_tables(local), report_tables(summed), strict=True):
        if a.name not in ("Method", "Summary"):  # they name the source
            assert a.rows == b.rows, a.name
    assert summed.totals() == local.totals()
    assert summed.totals()[EL] > Decimal(0)
    assert summed.annual_factor_hours == local.annual_factor_hours
    quality = {(q.branch, q.device): q for q in summed.quality}
    assert any(q.interpolated_runs for q in quality.values())  # the bridged gaps
    assert [(q.missing_runs, q.interpolated_runs) for q in summed.quality] == [
        (q.missing_runs, q.interpolated_runs) for q in local.quality
    ]
