"""The fleet overview dashboard, built from the schema: every branch's mode now, people present,
open alerts, gateway health and today's energy. Queries are InfluxQL, so they run on InfluxDB
1.x, on 2.x through its v1 API, and on 3.x.

Dashboards are plain data (Grafana's JSON model) built by small typed helpers; the queries are
kept next to each panel so tests can run every one of them against a real influxd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge import schema

__all__ = ["Panel", "fleet_overview", "panels_of"]

DATASOURCE = {"type": "influxdb", "uid": "openbranch-influxdb"}
BRANCH_FILTER = f'"{schema.Tag.BRANCH.value}" =~ /^$branch$/'


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    query: str  # InfluxQL with Grafana's $timeFilter and $branch
    kind: str = "table"  # table | timeseries | stat
    unit: str = ""
    expects: tuple[str, ...] = ()  # the columns the panel reads besides time and tags


def _q(select: str, measurement: schema.Measurement, group: str) -> str:
    return (
        f'SELECT {select} FROM "{measurement.name}" WHERE $timeFilter AND {BRANCH_FILTER}'  # noqa: S608 - schema names
        f" GROUP BY {group}"
    )


def _last(field: schema.Field) -> str:
    return f'last("{field.key}") AS "{field.key}"'


def panels_of() -> tuple[Panel, ...]:
    branch, kind = f'"{schema.Tag.BRANCH.value}"', f'"{schema.Tag.KIND.value}"'
    carrier = f'"{schema.Tag.CARRIER.value}"'
    return (
        Panel(
            "Mode now",
            _q(_last(schema.BRANCH_MODE_MODE), schema.BRANCH_MODE, branch),
            expects=(schema.BRANCH_MODE_MODE.key,),
        ),
        Panel(
            "People present",
            _q(_last(schema.OCCUPANCY_PRESENT), schema.OCCUPANCY, branch),
            kind="stat",
            expects=(schema.OCCUPANCY_PRESENT.key,),
        ),
        Panel(
            "Alerts (last state per kind; active = open)",
            _q(
                f"{_last(schema.ALERT_ACTIVE)}, {_last(schema.ALERT_MESSAGE)}",
                schema.ALERT,
                f"{branch}, {kind}",
            ),
            expects=(schema.ALERT_ACTIVE.key, schema.ALERT_MESSAGE.key),
        ),
        Panel(
            "Gateway health",
            _q(
                f"{_last(schema.GATEWAY_OUTBOX_DEPTH)}, {_last(schema.GATEWAY_DEVICES_DOWN)}",
                schema.GATEWAY,
                branch,
            ),
            expects=(schema.GATEWAY_OUTBOX_DEPTH.key, schema.GATEWAY_DEVICES_DOWN.key),
        ),
        Panel(
            "Energy in the period, per carrier",
            _q(
                f'sum("{schema.HOURLY_CONSUMPTION.key}") AS "{schema.HOURLY_CONSUMPTION.key}"',
                schema.ENERGY_HOURLY,
                f"{branch}, {carrier}",
            ),
            unit="kwatth",
            expects=(schema.HOURLY_CONSUMPTION.key,),
        ),
    )


def _panel_json(i: int, panel: Panel) -> dict[str, Any]:
    return {
        "id": i + 1,
        "type": panel.kind,
        "title": panel.title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "query": panel.query,
                "rawQuery": True,
                "resultFormat": "table" if panel.kind == "table" else "time_series",
            }
        ],
    }


def fleet_overview(municipality: str) -> dict[str, Any]:
    """The Grafana dashboard JSON."""
    return {
        "uid": f"openbranch-fleet-{municipality}",
        "title": f"Fleet overview — {municipality}",
        "tags": ["openbranch", municipality],
        "timezone": "browser",
        "schemaVersion": 39,
        "time": {"from": "now/d", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [
                {
                    "name": "branch",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": f'SHOW TAG VALUES FROM "{schema.BRANCH_MODE.name}"'
                    f' WITH KEY = "{schema.Tag.BRANCH.value}"',
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                }
            ]
        },
        "panels": [_panel_json(i, p) for i, p in enumerate(panels_of())],
    }
