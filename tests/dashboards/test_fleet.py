"""Every panel query of the fleet dashboard, after Grafana's $timeFilter and $branch
substitution, runs against a real influxd holding gateway data and returns what it shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from dashboards.fleet import fleet_overview, panels_of
from edge import schema
from edge.reading import Reading
from tests.services import Influxd


def demo_lines(now: datetime) -> list[str]:
    """What a gateway writes: modes, people, alerts, health and closed hours."""
    out = []
    for branch in ("hasle", "viby"):
        t = now - timedelta(hours=3)
        for m, fields, tags in [
            (schema.BRANCH_MODE, {"mode": "self_service"}, {}),
            (schema.OCCUPANCY, {"present": 7, "entered": 20, "exited": 13}, {}),
            (
                schema.ALERT,
                {"active": True, "message": "1 still present", "severity": "warning"},
                {"kind": "not_empty"},
            ),
            (schema.GATEWAY, {"outbox_depth": 0, "devices_down": 0}, {}),
            (
                schema.ENERGY_HOURLY,
                {"consumption": 12.5, "quality": "measured", "coverage": 1.0},
                {"carrier": "electricity"},
            ),
        ]:
            out.append(
                Reading(
                    branch=branch, device="gateway", measurement=m, fields=fields, tags=tags, time=t
                ).to_line()
            )
    return out


def substitute(query: str, branch_regex: str = ".*") -> str:
    """Grafana's macros for InfluxQL: $timeFilter and a multi-value variable as a regex."""
    return query.replace("$timeFilter", "time > now() - 24h").replace("$branch", branch_regex)


def test_every_panel_query_returns_its_series(influxd: Influxd, influx_db: str) -> None:
    influxd.write("\n".join(demo_lines(datetime.now(UTC))), influx_db)
    for panel in panels_of():
        answer = influxd.query(substitute(panel.query), influx_db)["results"][0]
        series = answer.get("series", [])
        assert len(series) >= 2, (panel.title, answer)  # one per branch (at least)
        for s in series:
            assert set(panel.expects) <= set(s["columns"]), (panel.title, s["columns"])
            assert all(v is not None for v in s["values"][0][1:]), (panel.title, s)
    one = influxd.query(substitute(panels_of()[0].query, "hasle"), influx_db)["results"][0]
    assert [s["tags"]["branch"] for s in one["series"]] == ["hasle"]


def test_dashboard_json_has_the_documented_shape() -> None:
    dashboard = fleet_overview("aarhus")
    text = json.dumps(dashboard)
    assert json.loads(text) == dashboard
    assert dashboard["uid"] == "openbranch-fleet-aarhus"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["branch"]
    for panel in dashboard["panels"]:
        assert {"id", "type", "title", "datasource", "gridPos", "targets"} <= set(panel)
        assert panel["targets"][0]["rawQuery"] is True
        assert "$timeFilter" in panel["targets"][0]["query"]
