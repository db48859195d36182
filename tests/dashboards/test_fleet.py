"""The fleet overview shows one row per branch: every panel query, after Grafana's
substitution, run against a real influxd holding what two gateways write today."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from openbranch.dashboards.fleet import fleet_overview, panels_of
from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading
from tests.services import Influxd
from tests.support.interpolate import TimeRange, VariableValue, interpolate

BRANCHES = ("hasle", "viby")


def gateway_lines(now: datetime) -> list[str]:
    """What a gateway writes: modes, counters, alerts, health and closed hours."""
    out = []
    for branch in BRANCHES:
        for minutes, entered, exited in ((50, 3, 0), (20, 20, 13)):
            t = now - timedelta(minutes=minutes)
            for m, fields, tags in [
                (schema.BRANCH_MODE, {schema.BRANCH_MODE_MODE.key: "self_service"}, {}),
                (
                    schema.OCCUPANCY,
                    {schema.OCCUPANCY_ENTERED.key: entered, schema.OCCUPANCY_EXITED.key: exited},
                    {},
                ),
                (
                    schema.ALERT,
                    {
                        schema.ALERT_ACTIVE.key: True,
                        schema.ALERT_MESSAGE.key: "1 still present",
                        schema.ALERT_SEVERITY.key: "warning",
                    },
                    {schema.Tag.KIND.value: "not_empty"},
                ),
                (
                    schema.GATEWAY,
                    {
                        schema.GATEWAY_OUTBOX_DEPTH.key: 0,
                        schema.GATEWAY_DEVICES_DOWN.key: 0,
                        schema.GATEWAY_DROPPED.key: 0,
                    },
                    {},
                ),
                (
                    schema.ENERGY_HOURLY,
                    {
                        schema.HOURLY_CONSUMPTION.key: 12.5,
                        schema.HOURLY_QUALITY.key: "measured",
                        schema.HOURLY_COVERAGE.key: 1.0,
                    },
                    {schema.Tag.CARRIER.value: schema.Carrier.ELECTRICITY.value},
                ),
            ]:
                out.append(
                    Reading(
                        branch=branch, device="gw", measurement=m, fields=fields, tags=tags, time=t
                    ).to_line()
                )
    return out


def test_every_fleet_panel_has_a_row_per_branch(influxd: Influxd, influx_db: str) -> None:
    now = datetime.now(UTC)
    influxd.write("\n".join(gateway_lines(now)), influx_db)
    everything = {
        "municipality": VariableValue.single("hasle|viby"),
        "branch": VariableValue(("$__all",), multi=True, include_all=True, all_value=".*"),
    }
    for panel in panels_of():
        for target in panel.targets:
            query = interpolate(
                target.query,
                everything,
                time_range=TimeRange("now-2h", "now"),
                panel_time_from=None if panel.time_from == "now/d" else panel.time_from,
            )
            series = influxd.query(query, influx_db)["results"][0].get("series", [])
            branches = {s["tags"]["branch"] for s in series}
            assert branches == set(BRANCHES), (panel.title, series)
            for s in series:
                assert set(target.expects) <= set(s["columns"]), (panel.title, s["columns"])
    present = next(p for p in panels_of() if p.title == "People present").targets[0]
    rows = influxd.rows(
        interpolate(present.query, everything, time_range=TimeRange("now-2h", "now")), influx_db
    )
    assert [r[1] for r in rows] == [17 - 13, 17 - 13]  # (20 - 3) in, (13 - 0) out


def test_dashboard_json_has_the_documented_shape() -> None:
    dashboard = fleet_overview("aarhus")
    text = json.dumps(dashboard)
    assert json.loads(text) == dashboard
    assert dashboard["uid"] == "openbranch-fleet-aarhus"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["municipality", "branch"]
    for panel in dashboard["panels"]:
        assert {"id", "type", "title", "datasource", "gridPos", "targets"} <= set(panel)
        assert all(t["rawQuery"] is True for t in panel["targets"])
        assert all("$timeFilter" in t["query"] for t in panel["targets"])
