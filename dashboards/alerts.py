"""Grafana-managed alert rules, as Grafana's alerting provisioning file (apiVersion 1): each
rule is one InfluxQL query (A) over a relative time range, a reduce expression (B) and a
threshold expression (C, the condition), evaluated per branch (the series' branch tag).

- Branch stopped reporting: health reports per 5 minutes over the last day, ``fill(0)``, so a
  branch that went silent keeps a series whose last buckets are 0. The current bucket may be
  less than a minute old (health is reported every minute), so the rule must hold for 10
  minutes before it fires. A branch silent for more than a day has no series left: NoData.
- Outbox growing: the rise of the outbox depth over the last 30 minutes (readings waiting for
  the database); above 1000 for 15 minutes fires.
- Branch still occupied after closing: the gateway's own ``not_empty`` alert (raised when
  people are counted inside past the closing grace, cleared when the branch is empty) is last
  raised; the query has a row only then, so no data is the normal, OK state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from openbranch.dashboards.common import short_uid
from openbranch.dashboards.influxql import BRANCH, NOT_EMPTY_ALERT, f, select, t
from openbranch.dashboards.model import DATASOURCE, Fleet, Target
from openbranch.edge.core import schema

__all__ = ["AlertRule", "alert_rules", "alert_rules_yaml"]

EXPRESSIONS = "__expr__"  # Grafana's server-side expressions "data source"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRule:
    key: str
    title: str
    summary: str
    query: Target
    range_seconds: int
    reducer: Literal["last", "max", "min", "mean"]
    op: Literal["gt", "lt"]
    threshold: float
    pending: str  # Grafana's "for"
    no_data: Literal["NoData", "OK", "Alerting"] = "NoData"

    def fires(self, value: float) -> bool:
        """The threshold expression on one reduced value."""
        return value > self.threshold if self.op == "gt" else value < self.threshold

    def to_json(self, fleet: Fleet) -> dict[str, Any]:
        model = dict(self.query.to_json(), intervalMs=1000, maxDataPoints=43200)
        return {
            "uid": short_uid(f"openbranch-{fleet.id}-{self.key}"),
            "title": self.title,
            "condition": "C",
            "data": [
                {
                    "refId": "A",
                    "relativeTimeRange": {"from": self.range_seconds, "to": 0},
                    "datasourceUid": DATASOURCE["uid"],
                    "model": model,
                },
                {
                    "refId": "B",
                    "datasourceUid": EXPRESSIONS,
                    "model": {
                        "refId": "B",
                        "type": "reduce",
                        "expression": "A",
                        "reducer": self.reducer,
                        "settings": {"mode": "dropNN"},
                    },
                },
                {
                    "refId": "C",
                    "datasourceUid": EXPRESSIONS,
                    "model": {
                        "refId": "C",
                        "type": "threshold",
                        "expression": "B",
                        "conditions": [
                            {"evaluator": {"type": self.op, "params": [self.threshold]}}
                        ],
                    },
                },
            ],
            "noDataState": self.no_data,
            "execErrState": "Error",
            "for": self.pending,
            "annotations": {"summary": self.summary},
            "labels": {"openbranch": self.key, "municipality": fleet.id},
            "isPaused": False,
        }


def alert_rules(fleet: Fleet) -> tuple[AlertRule, ...]:
    outbox = f(schema.GATEWAY_OUTBOX_DEPTH)
    fleet_only = f"{BRANCH} =~ /^({fleet.branch_regex})$/"
    return (
        AlertRule(
            key="silent",
            title="Branch stopped reporting",
            summary="No health report from {{ $labels.branch }} for 15 minutes",
            query=Target(
                query=select(
                    f'count({outbox}) AS "reports"',
                    schema.GATEWAY,
                    group=f"time(5m), {BRANCH}",
                    fill="0",
                    branches=fleet_only,
                ),
                expects=("reports",),
            ),
            range_seconds=86400,
            reducer="last",
            op="lt",
            threshold=1,
            pending="10m",
        ),
        AlertRule(
            key="outbox",
            title="Outbox growing",
            summary="{{ $labels.branch }}: readings pile up in the outbox (database unreachable?)",
            query=Target(
                query=select(
                    f'last({outbox}) - first({outbox}) AS "growth"',
                    schema.GATEWAY,
                    group=BRANCH,
                    branches=fleet_only,
                ),
                expects=("growth",),
            ),
            range_seconds=1800,
            reducer="last",
            op="gt",
            threshold=1000,
            pending="15m",
        ),
        AlertRule(
            key="occupied",
            title="Branch still occupied after closing",
            summary="People are still counted inside {{ $labels.branch }} after closing",
            query=Target(
                query=select(
                    'count("raised") AS "still_occupied"',
                    "("
                    + select(
                        f'last({f(schema.ALERT_ACTIVE)}) AS "raised"',
                        schema.ALERT,
                        where=f"{t(schema.Tag.KIND)} = '{NOT_EMPTY_ALERT}'",
                        group=BRANCH,
                        branches=fleet_only,
                    )
                    + ")",
                    where='"raised" = true',
                    group=BRANCH,
                ),
                expects=("still_occupied",),
            ),
            range_seconds=86400,
            reducer="last",
            op="gt",
            threshold=0,
            pending="0s",
            no_data="OK",
        ),
    )


def alert_rules_yaml(fleet: Fleet) -> str:
    """Grafana's alerting provisioning file for the fleet's folder."""
    document: Mapping[str, Any] = {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": f"openbranch-{fleet.id}",
                "folder": fleet.name,
                "interval": "1m",
                "rules": [rule.to_json(fleet) for rule in alert_rules(fleet)],
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
