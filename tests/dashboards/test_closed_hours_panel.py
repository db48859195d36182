"""The energy dashboard's "Closed-hours energy" panel against the demo day in a real influxd.

The demo branch is closed before 08:00 and from 22:00 (examples/demo/gateway.yaml); its
gateway judged every whole closed hour into ``closed_hours``. The panel's closed kWh must be
the sum of the raw ``energy_hourly`` points (electricity and heat) of exactly those hours,
found here from the demo calendar, and its share that over all kWh. The join and the
division are Grafana's (a stand-in runs them: Grafana cannot run here).
"""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from openbranch.dashboards import all_dashboards
from tests.dashboards.conftest import DemoData
from tests.dashboards.grafana_standin import calculate_binary, join_by_field, rows_of
from tests.dashboards.test_dashboards import Runner, demo_fleet
from tests.services import Influxd


def test_closed_hours_share_and_waste_per_branch(influxd: Influxd, demo_data: DemoData) -> None:
    board = all_dashboards(demo_fleet(demo_data))["energy"]
    panel = next(p for p in board.panels if p.title == "Closed-hours energy")
    assert panel.options["sortBy"] == [{"displayName": "closed_share", "desc": True}]
    runner = Runner(influxd, demo_data, board)
    closed, total = (rows_of(runner.target(panel, t)) for t in panel.targets)
    (row,) = calculate_binary(
        join_by_field(closed, total, "branch", mode="inner"), panel.transformations[1]["options"]
    )

    # by hand: the raw hourly points whose hour lies wholly before 08:00 or from 22:00 local
    day = demo_data.start.date()
    opens = datetime.combine(day, time(8), demo_data.timezone).astimezone(UTC)
    closes = datetime.combine(day, time(22), demo_data.timezone).astimezone(UTC)
    points = influxd.rows(
        "SELECT consumption, carrier FROM energy_hourly"
        " WHERE carrier = 'electricity' OR carrier = 'district_heating'",
        demo_data.database,
    )
    stamps = [(datetime.fromisoformat(p[0].replace("Z", "+00:00")), p[1]) for p in points]
    expected = sum(kwh for t, kwh in stamps if t < opens or t >= closes)
    everything = sum(kwh for _, kwh in stamps)
    assert expected > 0
    assert row["branch"] == demo_data.branch
    assert row["closed_kwh"] == pytest.approx(expected)
    assert row["kwh"] == pytest.approx(everything)
    assert 0 < row["closed_share"] < 1
    assert row["closed_share"] == pytest.approx(expected / everything)
    # one day of history is less than the 24 closed hours a base load needs: every closed
    # hour is still learning (or not measured, across the demo's outage), no waste claimed
    verdicts = {r[1] for r in influxd.rows("SELECT verdict FROM closed_hours", demo_data.database)}
    assert "learning" in verdicts
    assert verdicts <= {"learning", "not_measured"}
    assert row["waste_kwh"] == 0
