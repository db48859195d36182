"""Extended hours: what self-service ("open library") hours add — visits in staffed vs
self-service hours, hours gained per week, alerts per self-service hour, energy per mode-hour,
card admissions per hour by mode (self-service entry, ``admission``).

InfluxQL cannot join a measurement with another, and the mode is a measurement of its own
(written when it changes). The hourly roll-up ``branch_hourly`` (InfluxDB's continuous
queries, provisioning/influx.py) holds, per branch and hour, the mode at the hour's end beside
the hour's kWh, alerts and the counters' readings: each panel that relates a value to the mode
is one query for every selected branch, grouped by branch and mode in Grafana (groupBy). Hours
per mode are the roll-up's hours counted in InfluxQL (decision 98).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openbranch.dashboards.common import fleet_variables, uid
from openbranch.dashboards.influxql import BRANCH, last, mode_hours, per_mode, select, t
from openbranch.dashboards.model import Dashboard, Fleet, Panel, Target
from openbranch.edge.core import schema
from openbranch.edge.core.schedule import Mode

__all__ = ["by_mode", "extended_dashboard"]

WEEKS = "time(7d, 4d)"  # InfluxQL's epoch is a Thursday: weeks from Monday 00:00 UTC


def by_mode(field: str, aggregations: tuple[str, ...]) -> tuple[Mapping[str, Any], ...]:
    """Grafana transformations: hours before the first mode (no mode: "") left out, then one
    row per branch and mode with ``aggregations`` of ``field`` over its hours."""
    mode = schema.ROLLUP_MODE.key
    return (
        {
            "id": "filterByValue",
            "options": {
                "type": "exclude",
                "match": "any",
                "filters": [
                    {"fieldName": mode, "config": {"id": "equal", "options": {"value": ""}}}
                ],
            },
        },
        {
            "id": "groupBy",
            "options": {
                "fields": {
                    schema.Tag.BRANCH.value: {"operation": "groupby", "aggregations": []},
                    mode: {"operation": "groupby", "aggregations": []},
                    field: {"operation": "aggregate", "aggregations": list(aggregations)},
                }
            },
        },
    )


def _per_mode_panel(title: str, description: str, field: str, aggs: tuple[str, ...]) -> Panel:
    return Panel(
        title=title,
        description=description,
        kind="table",
        width=8,
        transformations=by_mode(field, aggs),
        targets=(
            Target(
                query=per_mode(field),
                expects=(field, schema.ROLLUP_MODE.key),
                result_format="table",
            ),
        ),
    )


def panels() -> tuple[Panel, ...]:
    return (
        Panel(
            title="Hours per week: self-service (gained) and staffed",
            kind="barchart",
            unit="h",
            width=24,
            targets=(
                Target(
                    query=mode_hours(Mode.SELF_SERVICE, "self_service_hours", per=WEEKS),
                    expects=("self_service_hours",),
                ),
                Target(
                    ref="C",
                    query=mode_hours(Mode.STAFFED, "staffed_hours", per=WEEKS),
                    expects=("staffed_hours",),
                ),
            ),
        ),
        _per_mode_panel(
            "Visits by mode",
            "visits (counter increases) per hour, summed by the mode of the hour",
            "visits",
            ("sum", "mean"),
        ),
        _per_mode_panel(
            "Alerts per mode-hour",
            "alerts raised by the gateway per hour; mean = alerts per hour in that mode",
            schema.ROLLUP_ALERTS.key,
            ("sum", "count", "mean"),
        ),
        _per_mode_panel(
            "Energy per mode-hour",
            "kWh (electricity and heat) per hour; mean = kWh per hour in that mode",
            schema.ROLLUP_KWH.key,
            ("sum", "count", "mean"),
        ),
        _admissions_panel(),
    )


def _admissions_panel() -> Panel:
    """Cards admitted and refused per hour, by the branch mode the gateway counted them in
    (each hour's point is written again with each decision: its last value is the hour's);
    a series per branch and mode, one query for every selected branch."""
    counts = f"{last(schema.ADMISSION_ADMITTED)}, {last(schema.ADMISSION_REFUSED)}"
    return Panel(
        title="Card admissions per hour by mode",
        description="self-service entry: cards admitted and refused at the readers per hour, "
        "by branch mode (admitted in self-service hours: the visits the extended hours bring)",
        kind="barchart",
        width=24,
        targets=(
            Target(
                query=select(
                    counts,
                    schema.ADMISSION,
                    group=f"time(1h), {BRANCH}, {t(schema.Tag.MODE)}",
                    fill="none",
                ),
                expects=(schema.ADMISSION_ADMITTED.key, schema.ADMISSION_REFUSED.key),
                alias=f"$col $tag_{schema.Tag.BRANCH.value} $tag_{schema.Tag.MODE.value}",
            ),
        ),
    )


def extended_dashboard(fleet: Fleet) -> Dashboard:
    return Dashboard(
        uid=uid("extended-hours", fleet),
        title=f"Extended hours — {fleet.name}",
        description="Self-service hours: visits, hours gained, alerts and energy per mode.",
        tags=("openbranch", fleet.id),
        time_from="now-7d",
        timezone=fleet.timezone,
        refresh="1h",
        panels=panels(),
        variables=fleet_variables(fleet),
    )
