"""Extended hours: what self-service ("open library") hours add — visits in staffed vs
self-service hours, hours gained per week, alerts per self-service hour, energy per mode-hour,
card admissions per hour by mode (self-service entry, ``admission``).

InfluxQL cannot join a measurement with another, and the mode is a measurement of its own
(written when it changes). The hourly roll-up ``branch_hourly`` (InfluxDB's continuous
queries, provisioning/influx.py) holds, per branch and hour, the mode at the hour's end beside
the hour's kWh, alerts and the counters' readings: each panel that relates a value to the mode
is one query for every selected branch, summed by the server from the hour's figures kept again
under the name of its mode (``kwh_staffed``...): a row per branch, columns per mode. Hours per
mode are the roll-up's ``hours_<mode>`` summed (decision 98).
"""

from __future__ import annotations

from openbranch.dashboards.common import fleet_variables, uid
from openbranch.dashboards.influxql import BRANCH, last, mode_hours, per_mode, select, t
from openbranch.dashboards.model import Dashboard, Fleet, Panel, Target
from openbranch.edge.core import schema
from openbranch.edge.core.schedule import Mode

__all__ = ["extended_dashboard"]

WEEKS = "time(7d, 4d)"  # InfluxQL's epoch is a Thursday: weeks from Monday 00:00 UTC


def _per_mode_panel(title: str, description: str, field: str) -> Panel:
    every_day = (Mode.CLOSED, Mode.STAFFED, Mode.SELF_SERVICE)  # every mode has its columns
    if field == schema.ROLLUP_KWH.key:
        expects = tuple(f"{m} {field} {c}" for m in every_day for c in ("sum", "count", "mean"))
    else:  # a mode's sum is empty when nothing was counted in it (no alerts while closed)
        expects = (*(f"{m} hours" for m in every_day), f"{Mode.STAFFED} {field} sum")
    return Panel(
        title=title,
        description=description,
        kind="table",
        width=24,
        targets=(Target(query=per_mode(field), expects=expects, result_format="table"),),
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
            "visits (counter increases) per branch and mode of the hour; mean = per hour",
            schema.ROLLUP_VISITS.key,
        ),
        _per_mode_panel(
            "Alerts per mode-hour",
            "alerts raised by the gateway; mean = alerts per hour in that mode",
            schema.ROLLUP_ALERTS.key,
        ),
        _per_mode_panel(
            "Energy per mode-hour",
            "kWh (electricity and heat); count = hours with kWh, mean = kWh per hour in that mode",
            schema.ROLLUP_KWH.key,
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
