"""The branch dashboard: one branch (or a few) through the day — mode bands, people, doors,
lights, indoor climate, energy per carrier, alerts and the audit trail of events."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from openbranch.dashboards.common import fleet_variables, mode_mappings, uid
from openbranch.dashboards.influxql import (
    BRANCH,
    KWH_CARRIERS,
    PER_INTERVAL,
    TIERED_POINTS,
    alert_columns,
    f,
    kwh_per_interval,
    last,
    m,
    newest,
    select,
    t,
    tiers,
    visits_per,
)
from openbranch.dashboards.model import Dashboard, Fleet, Panel, Target
from openbranch.edge.core import schema
from openbranch.edge.core.schema import GATEWAY_DEVICE

__all__ = ["branch_dashboard"]

_BOOL_MAPPINGS: tuple[dict[str, Any], ...] = (
    {
        "type": "value",
        "options": {
            "true": {"text": "yes", "color": "orange", "index": 0},
            "false": {"text": "no", "color": "green", "index": 1},
        },
    },
)


def _present() -> str:
    """People present: entries minus exits per interval (an hour or more: the roll-up's net
    entries per hour, or per day past HOURLY_SPAN, summed over the counters), accumulated from
    the start of the range (open the range when the branch is empty)."""
    return select(
        f'cumulative_sum(sum({f(schema.ROLLUP_NET)})) AS "present"',
        tiers((schema.ROLLUP_NET,), schema.BRANCH_HOURLY, raw=False),
        group=f"{PER_INTERVAL}, {BRANCH}",
    )


def _per_zone(title: str, unit: str, field: schema.Field, measurement: schema.Measurement) -> Panel:
    """A time series of ``field``'s mean per interval, one line per zone."""
    return Panel(
        title=title,
        kind="timeseries",
        unit=unit,
        max_data_points=TIERED_POINTS,
        targets=(
            Target(
                query=_per_interval(field, measurement, schema.Tag.ZONE),
                expects=(field.key,),
            ),
        ),
    )


def _per_interval(field: schema.Field, measurement: schema.Measurement, tag: schema.Tag) -> str:
    """The mean per interval: raw points for the range's last days, then the roll-ups' hourly
    and daily means (decision 102)."""
    return select(
        f'mean({f(field)}) AS "{field.key}"',
        tiers((field,), measurement, raw=True),
        group=f"{PER_INTERVAL}, {BRANCH}, {t(tag)}",
        fill="previous",
    )


def panels() -> tuple[Panel, ...]:
    device = t(schema.Tag.DEVICE)
    return (
        Panel(
            title="Mode",
            description="staffed, self-service and closed hours as bands",
            kind="state-timeline",
            width=24,
            height=5,
            mappings=mode_mappings(),
            max_data_points=TIERED_POINTS,
            options={"showValue": "auto", "mergeValues": True, "rowHeight": 0.8},
            targets=(
                Target(
                    query=select(
                        last(schema.BRANCH_MODE_MODE),
                        schema.BRANCH_MODE,
                        group=f"{PER_INTERVAL}, {BRANCH}",
                        fill="previous",
                    ),
                    expects=(schema.BRANCH_MODE_MODE.key,),
                ),
            ),
        ),
        Panel(
            title="People present and visits",
            description="present: entries minus exits since the start of the range, per hour"
            " or longer (the hourly roll-up branch_hourly)",
            kind="timeseries",
            interval="1h",
            max_data_points=TIERED_POINTS,
            targets=(
                Target(query=_present(), expects=("present",)),
                Target(ref="B", query=visits_per(PER_INTERVAL), expects=("visits",)),
            ),
        ),
        Panel(
            title="Doors: open and locked",
            kind="state-timeline",
            mappings=_BOOL_MAPPINGS,
            max_data_points=TIERED_POINTS,
            targets=tuple(  # a query per field: a year of 40 branches' doors is 29 k rows each
                Target(
                    ref=ref,
                    query=select(
                        last(field),
                        tiers((field,), schema.DOOR, raw=True),
                        group=f"{PER_INTERVAL}, {BRANCH}, {device}",
                        fill="previous",
                    ),
                    expects=(field.key,),
                )
                for ref, field in (("A", schema.DOOR_OPEN), ("B", schema.DOOR_LOCKED))
            ),
        ),
        Panel(
            title="Events: mode changes, commands, announcements",
            kind="table",
            targets=(
                Target(
                    query=newest(f(schema.AUDIT_MESSAGE), schema.AUDIT),
                    expects=(schema.AUDIT_MESSAGE.key,),
                    result_format="table",
                ),
            ),
        ),
        _per_zone("Lights (dimming level per zone)", "percent", schema.LIGHT_LEVEL, schema.LIGHT),
        _per_zone("Indoor temperature", "celsius", schema.INDOOR_TEMPERATURE, schema.INDOOR),
        _per_zone("Indoor CO2", "ppm", schema.INDOOR_CO2, schema.INDOOR),
        Panel(
            title="Energy per carrier",
            description="kWh per carrier from the hourly roll-up of energy_hourly (the gateway's"
            " reset-corrected hours), per day past 90 days",
            kind="timeseries",
            unit="kwatth",
            interval="1h",
            max_data_points=TIERED_POINTS,
            options={"legend": {"displayMode": "table", "calcs": ["sum"]}},
            targets=(Target(query=kwh_per_interval(), expects=KWH_CARRIERS),),
        ),
        Panel(
            title="Alerts raised and cleared by the gateway",
            kind="table",
            width=24,
            targets=(
                Target(
                    query=newest(
                        alert_columns(), schema.ALERT, where=f"{device} = '{GATEWAY_DEVICE}'"
                    ),
                    expects=(schema.ALERT_ACTIVE.key, schema.ALERT_MESSAGE.key),
                    result_format="table",
                ),
            ),
        ),
    )


def branch_dashboard(fleet: Fleet) -> Dashboard:
    """Opens on the fleet's first branch (All stays a choice) and refreshes every 5 minutes:
    a view of one branch, not a wall display of every branch (decision 99)."""
    municipality, branch = fleet_variables(fleet)
    if fleet.branches:
        first = fleet.branches[0]
        branch = replace(branch, default=first.id, default_text=first.name)
    return Dashboard(
        uid=uid("branch", fleet),
        title=f"Branch — {fleet.name}",
        description=f"One branch through the day. Source: {m(schema.BRANCH_MODE)} and the rest.",
        tags=("openbranch", fleet.id),
        time_from="now/d",
        timezone=fleet.timezone,
        refresh="5m",
        panels=panels(),
        variables=(municipality, branch),
    )
