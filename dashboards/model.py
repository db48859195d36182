"""The shared dashboard model: plain frozen dataclasses that render to Grafana's JSON model.

Every panel keeps its InfluxQL queries (``Target``) with the columns it reads, so tests can
list every query of every dashboard (``Dashboard.targets()``), run it against a real influxd
and check the answer. ``Fleet`` says which municipality and branches a build is for (names,
floor areas, price area); dashboards never import the provisioning inventory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DATASOURCE",
    "BranchInfo",
    "Dashboard",
    "Fleet",
    "Panel",
    "PanelKind",
    "Target",
    "Variable",
]

DATASOURCE: Mapping[str, str] = {"type": "influxdb", "uid": "openbranch-influxdb"}
SCHEMA_VERSION = 39  # Grafana 10.4/11's dashboard schema version (checked with 11.6's types)
GRID_WIDTH = 24

PanelKind = Literal["table", "timeseries", "stat", "state-timeline", "barchart", "bargauge"]
ResultFormat = Literal["time_series", "table"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchInfo:
    id: str
    name: str
    floor_area_m2: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fleet:
    """What a build knows about the fleet: one municipality and its branches."""

    id: str
    name: str
    timezone: str = "Europe/Copenhagen"
    price_area: str | None = None  # DK1 | DK2
    branches: tuple[BranchInfo, ...] = ()

    @property
    def branch_regex(self) -> str:
        """The branch ids as an InfluxQL regex body (``a|b``), or ``.*`` without branches."""
        return "|".join(b.id for b in self.branches) if self.branches else ".*"


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One InfluxQL query of a panel and the columns the panel reads from its answer."""

    query: str  # with Grafana's $timeFilter, $__interval and $variables
    expects: tuple[str, ...]  # columns besides time and tags; each must come back
    ref: str = "A"
    result_format: ResultFormat = "time_series"
    alias: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "refId": self.ref,
            "datasource": dict(DATASOURCE),
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias:
            out["alias"] = self.alias
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Panel:
    title: str
    kind: PanelKind
    targets: tuple[Target, ...]
    description: str = ""
    unit: str = ""
    width: int = 12
    height: int = 8
    time_from: str | None = None  # a panel's own relative range ("7d", "now/d")
    interval: str | None = None  # the lower bound of $__interval ("1h")
    max_data_points: int | None = None  # Grafana's default: the panel's width in pixels
    repeat: str | None = None  # a variable: one panel per selected value
    mappings: tuple[Mapping[str, Any], ...] = ()
    transformations: tuple[Mapping[str, Any], ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": dict(DATASOURCE),
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {
                "defaults": {"unit": self.unit, "mappings": [dict(m) for m in self.mappings]},
                "overrides": [],
            },
            "options": dict(self.options),
            "targets": [t.to_json() for t in self.targets],
            "transformations": [dict(t) for t in self.transformations],
        }
        if self.time_from is not None:
            out["timeFrom"] = self.time_from
        if self.interval is not None:
            out["interval"] = self.interval
        if self.max_data_points is not None:
            out["maxDataPoints"] = self.max_data_points
        if self.repeat is not None:
            out["repeat"] = self.repeat
            out["repeatDirection"] = "h"
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Variable:
    """A template variable. ``query`` is InfluxQL for kind "query", Grafana's
    ``text : value, ...`` list for "custom", the value itself for "textbox" and "constant"."""

    name: str
    label: str
    kind: Literal["query", "custom", "textbox", "constant"]
    query: str
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    default: str = ""  # the value selected when the dashboard opens ("$__all" for All)
    default_text: str = ""
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.kind,
            "query": self.query,
            "description": self.description,
            "multi": self.multi,
            "includeAll": self.include_all,
            "current": {"text": self.default_text or self.default, "value": self.default},
            "hide": 0,
        }
        if self.kind == "query":
            out["datasource"] = dict(DATASOURCE)
            out["refresh"] = 2  # on time range change
        if self.kind == "custom":
            out["options"] = [
                {"text": text, "value": value, "selected": value == self.default}
                for text, value in self.custom_options()
            ]
        if self.all_value is not None:
            out["allValue"] = self.all_value
        return out

    def custom_options(self) -> list[tuple[str, str]]:
        """Grafana's custom-variable syntax: ``text : value`` pairs, comma-separated."""
        pairs = []
        for item in self.query.split(","):
            text, sep, value = item.partition(" : ")
            pairs.append((text.strip(), value.strip()) if sep else (item.strip(), item.strip()))
        return pairs


@dataclass(frozen=True, slots=True, kw_only=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...]
    tags: tuple[str, ...] = ("openbranch",)
    time_from: str = "now-24h"
    time_to: str = "now"
    timezone: str = "browser"
    refresh: str = "1m"

    def targets(self) -> Iterator[tuple[Panel, Target]]:
        """Every query of every panel, with its panel."""
        for panel in self.panels:
            for target in panel.targets:
                yield panel, target

    def variable(self, name: str) -> Variable:
        return next(v for v in self.variables if v.name == name)

    def to_json(self) -> dict[str, Any]:
        panels, x, y, row_height = [], 0, 0, 0
        for i, panel in enumerate(self.panels):
            if x + panel.width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            panels.append(panel.to_json(i + 1, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": self.timezone,
            "editable": False,
            "schemaVersion": SCHEMA_VERSION,
            "time": {"from": self.time_from, "to": self.time_to},
            "refresh": self.refresh,
            "templating": {"list": [v.to_json() for v in self.variables]},
            "panels": panels,
        }
