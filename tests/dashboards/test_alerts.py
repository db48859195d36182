"""The alert rules' queries, run the way Grafana's alerting runs them (relative time range ->
$timeFilter), against a real influxd holding hand-made gateway data; the reduce and threshold
expressions are applied by a stand-in (Grafana cannot run here). Each rule fires for the
branch in trouble and stays quiet for the healthy one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from openbranch.dashboards.alerts import AlertRule, alert_rules
from openbranch.dashboards.influxql import NOT_EMPTY_ALERT
from openbranch.dashboards.model import BranchInfo, Fleet
from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading
from tests.dashboards.grafana_standin import reduce
from tests.services import Influxd
from tests.support.interpolate import TimeRange, interpolate

CPH = ZoneInfo("Europe/Copenhagen")
NOW = datetime(2026, 11, 30, 23, 2, 30, tzinfo=CPH)  # 2.5 min into a 5-minute bucket
FLEET = Fleet(
    id="t",
    name="Test",
    branches=tuple(BranchInfo(id=b, name=b) for b in ("quiet", "busy", "late", "cleared")),
)


def line(
    branch: str,
    m: schema.Measurement,
    t: datetime,
    tags: dict[str, str] | None = None,
    **fields: Any,
) -> str:
    return Reading(
        branch=branch, device="gateway", measurement=m, fields=fields, tags=tags or {}, time=t
    ).to_line()


def evaluate(influxd: Influxd, db: str, rule: AlertRule) -> dict[str, bool]:
    """Branch -> firing, for one evaluation at NOW: the query (A), then the rule's own reduce
    expression (B, as provisioned) and its threshold (C)."""
    query = interpolate(
        rule.query.query,
        {},
        time_range=TimeRange(f"now-{rule.range_seconds}s", "now"),
        now=NOW,
        frozen_now=True,
    )
    assert "$timeFilter" not in query, query
    data = {d["refId"]: d["model"] for d in rule.to_json(FLEET)["data"]}
    assert data["B"]["type"] == "reduce" and data["B"]["expression"] == "A"
    answer = influxd.query(query, db)["results"][0]
    out = {}
    for series in answer.get("series", []):
        column = series["columns"].index(rule.query.expects[0])
        value = reduce([row[column] for row in series["values"]], data["B"])
        assert value is not None, (rule.key, series)
        out[series["tags"]["branch"]] = rule.fires(value)
    return out


def test_rules_fire_for_the_branch_in_trouble(influxd: Influxd, influx_db: str) -> None:
    lines = []
    health = schema.GATEWAY
    for minute in range(0, 120):
        t = NOW - timedelta(minutes=minute, seconds=10)
        depth = 0 if minute < 60 else 3
        lines.append(line("busy", health, t, outbox_depth=depth))
        if minute >= 30:  # quiet: silent for the last 30 minutes
            lines.append(line("quiet", health, t, outbox_depth=0))
        if minute < 29:  # late: the outbox grows by 60 readings a minute
            lines.append(line("late", health, t, outbox_depth=60 * (29 - minute)))
    kind = {schema.Tag.KIND.value: NOT_EMPTY_ALERT}
    lines += [
        line(
            "late",
            schema.ALERT,
            NOW - timedelta(minutes=10),
            kind,
            active=True,
            message="2 still present",
        ),
        line(
            "cleared",
            schema.ALERT,
            NOW - timedelta(minutes=40),
            kind,
            active=True,
            message="1 still present",
        ),
        line(
            "cleared",
            schema.ALERT,
            NOW - timedelta(minutes=20),
            kind,
            active=False,
            message="empty now",
        ),
    ]
    influxd.write("\n".join(lines), influx_db)
    stopped, growing, occupied = alert_rules(FLEET)
    assert evaluate(influxd, influx_db, stopped) == {"busy": False, "late": False, "quiet": True}
    assert evaluate(influxd, influx_db, growing) == {"busy": False, "late": True}
    assert evaluate(influxd, influx_db, occupied) == {"late": True}  # cleared: no data = OK
    assert occupied.no_data == "OK"
    assert stopped.pending == "10m"  # the current bucket may be young: it must hold a while


def test_the_reduce_stand_in_applies_each_reducer() -> None:
    values = [None, 4.0, float("nan"), 1.0, 7.0, None, 2.0]  # by hand: 4, 1, 7, 2 remain
    expected = {"last": 2.0, "max": 7.0, "min": 1.0, "mean": 3.5, "sum": 14.0, "count": 4.0}
    for reducer, value in expected.items():
        assert reduce(values, {"reducer": reducer, "settings": {"mode": "dropNN"}}) == value
    assert reduce([None], {"reducer": "last", "settings": {"mode": "dropNN"}}) is None
