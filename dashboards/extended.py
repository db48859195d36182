"""Extended hours: what self-service ("open library") hours add — visits in staffed vs
self-service hours, hours gained per week, alerts per self-service hour, energy per mode-hour,
card admissions per hour by mode (self-service entry, ``admission``).

InfluxQL cannot join a measurement with another, and the mode is a measurement of its own
(written when it changes). Panels that relate a value to the mode therefore ask two queries per
branch — the value per hour, and the mode at the end of each hour (carried forward with
fill(previous)) — and let Grafana join them by time and group by mode (transformations
joinByField + groupBy). Those panels repeat per selected branch. Hours per mode are counted
in InfluxQL alone, at 5-minute resolution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openbranch.dashboards.common import fleet_variables, uid
from openbranch.dashboards.influxql import (
    MODE_PER_HOUR,
    f,
    kwh_filter,
    last,
    mode_hours,
    select,
    t,
)
from openbranch.dashboards.model import Dashboard, Fleet, Panel, Target
from openbranch.edge.core import schema
from openbranch.edge.core.schedule import Mode
from openbranch.edge.core.schema import GATEWAY_DEVICE

__all__ = ["by_mode", "extended_dashboard"]

WEEKS = "time(7d, 4d)"  # InfluxQL's epoch is a Thursday: weeks from Monday 00:00 UTC


def by_mode(field: str, aggregations: tuple[str, ...]) -> tuple[Mapping[str, Any], ...]:
    """Grafana transformations: join A (``field`` per hour) and B (mode per hour) on time,
    then one row per mode with ``aggregations`` of ``field``."""
    mode = schema.BRANCH_MODE_MODE.key
    return (
        {"id": "joinByField", "options": {"byField": "Time", "mode": "outer"}},
        {
            "id": "groupBy",
            "options": {
                "fields": {
                    mode: {"operation": "groupby", "aggregations": []},
                    field: {"operation": "aggregate", "aggregations": list(aggregations)},
                }
            },
        },
    )


def _mode_target() -> Target:
    return Target(
        ref="B", query=MODE_PER_HOUR, expects=(schema.BRANCH_MODE_MODE.key,), result_format="table"
    )


def _per_mode_panel(
    title: str, description: str, value: Target, field: str, aggs: tuple[str, ...]
) -> Panel:
    return Panel(
        title=title,
        description=description,
        kind="table",
        repeat="branch",
        width=8,
        transformations=by_mode(field, aggs),
        targets=(value, _mode_target()),
    )


def panels() -> tuple[Panel, ...]:
    device = t(schema.Tag.DEVICE)
    visits_inner = select(
        f'non_negative_difference(max({f(schema.OCCUPANCY_ENTERED)})) AS "visits"',
        schema.OCCUPANCY,
        group=f"time(1h), {device}",
    )
    return (
        _admissions_panel(),
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
            Target(
                query=select(
                    'sum("visits") AS "visits"', f"({visits_inner})", group="time(1h)", fill="0"
                ),
                expects=("visits",),
                result_format="table",
            ),
            "visits",
            ("sum", "mean"),
        ),
        _per_mode_panel(
            "Alerts per mode-hour",
            "alerts raised by the gateway per hour; mean = alerts per hour in that mode",
            Target(
                query=select(
                    f'count({f(schema.ALERT_ACTIVE)}) AS "alerts"',
                    schema.ALERT,
                    where=f"{device} = '{GATEWAY_DEVICE}' AND {f(schema.ALERT_ACTIVE)} = true",
                    group="time(1h)",
                    fill="0",
                ),
                expects=("alerts",),
                result_format="table",
            ),
            "alerts",
            ("sum", "count", "mean"),
        ),
        _per_mode_panel(
            "Energy per mode-hour",
            "kWh (electricity and heat) per hour; mean = kWh per hour in that mode",
            Target(
                query=select(
                    f'sum({f(schema.HOURLY_CONSUMPTION)}) AS "kwh"',
                    schema.ENERGY_HOURLY,
                    where=kwh_filter(),
                    group="time(1h)",
                    fill="none",
                ),
                expects=("kwh",),
                result_format="table",
            ),
            "kwh",
            ("sum", "count", "mean"),
        ),
    )


def _admissions_panel() -> Panel:
    """Cards admitted and refused per hour, by the branch mode the gateway counted them in
    (each hour's point is written again with each decision: its last value is the hour's)."""
    counts = f"{last(schema.ADMISSION_ADMITTED)}, {last(schema.ADMISSION_REFUSED)}"
    return Panel(
        title="Card admissions per hour by mode",
        description="self-service entry: cards admitted and refused at the readers per hour, "
        "by branch mode (admitted in self-service hours: the visits the extended hours bring)",
        kind="barchart",
        width=24,
        repeat="branch",
        targets=(
            Target(
                query=select(
                    counts,
                    schema.ADMISSION,
                    group=f"time(1h), {t(schema.Tag.MODE)}",
                    fill="none",
                ),
                expects=(schema.ADMISSION_ADMITTED.key, schema.ADMISSION_REFUSED.key),
                alias=f"$col $tag_{schema.Tag.MODE.value}",
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
