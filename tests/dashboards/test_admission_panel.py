"""Self-service entry in the demo's day and on the extended-hours dashboard (issue 15).

The demo's evening (edge/demo/patrons.py) brings patrons to the entrance reader: the
gateway asks the demo's SIP2 ACS, admits most, and refuses a lost card, a child, three wrong
PINs and then the locked-out card, cards while the library system is down, and a blocked
patron; one tailgater follows an admission. The panel "Card admissions per hour by mode" then
reads, per hour and mode, the last of the hour's running counts: its sums must equal the
decisions the gateway audited.
"""

from __future__ import annotations

from pathlib import Path

from openbranch.dashboards import all_dashboards
from openbranch.dashboards.report import (
    InfluxSource,
    ReportOptions,
    build_report,
    load_branches,
    load_factor_table,
)
from openbranch.dashboards.report.tables import report_tables
from openbranch.edge.core.schedule import Mode
from tests.dashboards.conftest import DemoData
from tests.dashboards.grafana_standin import rows_of
from tests.dashboards.test_dashboards import Runner, _panel, demo_fleet
from tests.services import Influxd

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_evening_has_every_kind_of_entry(demo_data: DemoData) -> None:
    entry = demo_data.summary["entry"]
    assert entry["admitted"] > 20
    for reason, times in (("card_lost", 1), ("under_age", 1), ("wrong_pin", 3)):
        assert entry[reason] == times, (reason, entry)
    assert entry["locked_out"] >= 1  # the right PIN after three wrong ones
    assert entry["offline"] >= 1  # the library system down, refused by the default policy
    assert entry["charge_denied"] == 1
    timeline = "\n".join(demo_data.summary["timeline"])
    assert "alert tailgating:entrance-door" in timeline and "RAISED" in timeline
    assert "alert library_system_down" in timeline


def test_admissions_per_hour_by_mode_add_up_to_the_audit(
    influxd: Influxd, demo_data: DemoData
) -> None:
    board = all_dashboards(demo_fleet(demo_data))["extended-hours"]
    runner = Runner(influxd, demo_data, board)
    panel = _panel(board, "Card admissions per hour by mode")
    answer = runner.target(panel, panel.targets[0])
    by_mode = {s["tags"]["mode"]: s for s in answer["series"]}
    assert set(by_mode) == {Mode.SELF_SERVICE.value}  # cards admit in self-service hours only
    rows = rows_of({"series": [by_mode[Mode.SELF_SERVICE.value]]})
    entry = demo_data.summary["entry"]
    assert sum(r["admitted"] for r in rows) == entry["admitted"]
    assert sum(r["refused"] for r in rows) == sum(n for k, n in entry.items() if k != "admitted")
    assert len(rows) >= 4  # the morning's and the evening's self-service hours


def test_the_climate_report_counts_the_card_admissions_beside_the_visitors(
    demo_data: DemoData, influxd_session: Influxd
) -> None:
    day = demo_data.start.date()
    opts = ReportOptions(
        first=day,
        last=day,
        factors=load_factor_table(),
        branches=load_branches([ROOT / "examples" / "demo" / "branches.yaml"]),
    )
    with InfluxSource(url=influxd_session.url, database=demo_data.database) as source:
        report = build_report(source, opts)
    (branch,) = report.branches
    assert branch.admissions_self_service == demo_data.summary["entry"]["admitted"]
    table = next(t for t in report_tables(report) if t.name == "Branches")
    names = [c.title for c in table.columns]
    column = names.index("card admissions in self-service hours")
    assert names[column - 1] == "visitors"
    assert table.rows[0][column] == demo_data.summary["entry"]["admitted"]
