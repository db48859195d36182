"""The fleet overview: every branch's mode now, people present, open alerts, gateway health
(outbox depth, last data) and today's energy. One row per branch in each table.

"Now" panels carry their own time range (Grafana's ``timeFrom``): the mode and alert state
are written when they change, so "the last value within 7 days" is the value now; people
present and energy count from local midnight (``now/d``), when branches are closed and empty.
"""

from __future__ import annotations

from typing import Any

from openbranch.dashboards.common import fleet_variables, mode_mappings, uid
from openbranch.dashboards.influxql import BRANCH, alert_columns, f, kwh_filter, last, select, t
from openbranch.dashboards.model import DATASOURCE, Dashboard, Fleet, Panel, Target
from openbranch.edge.core import schema

__all__ = ["DATASOURCE", "fleet_dashboard", "fleet_overview", "panels_of"]


def _present_today() -> str:
    """Entries minus exits since the start of the range, summed over the branch's counters
    (each counter only grows, so its spread is its increase)."""
    inner = select(
        f"spread({f(schema.OCCUPANCY_ENTERED)}) - spread({f(schema.OCCUPANCY_EXITED)})"
        ' AS "present"',
        schema.OCCUPANCY,
        group=f"{BRANCH}, {t(schema.Tag.DEVICE)}",
    )
    return select('sum("present") AS "present"', f"({inner})", group=BRANCH)


def panels_of() -> tuple[Panel, ...]:
    kind, carrier = t(schema.Tag.KIND), t(schema.Tag.CARRIER)
    return (
        Panel(
            title="Mode now",
            kind="table",
            time_from="7d",
            mappings=mode_mappings(),
            targets=(
                Target(
                    query=select(last(schema.BRANCH_MODE_MODE), schema.BRANCH_MODE, group=BRANCH),
                    expects=(schema.BRANCH_MODE_MODE.key,),
                    result_format="table",
                ),
            ),
        ),
        Panel(
            title="People present",
            description="entries minus exits since local midnight, all entrances",
            kind="table",
            time_from="now/d",
            targets=(Target(query=_present_today(), expects=("present",), result_format="table"),),
        ),
        Panel(
            title="Alerts (last state per kind; active = open)",
            kind="table",
            time_from="7d",
            width=24,
            targets=(
                Target(
                    query=select(
                        alert_columns(latest=True),
                        schema.ALERT,
                        group=f"{BRANCH}, {kind}",
                    ),
                    expects=(schema.ALERT_ACTIVE.key, schema.ALERT_MESSAGE.key),
                    result_format="table",
                ),
            ),
        ),
        Panel(
            title="Gateway health",
            description="time of the last health report (last data), outbox depth, devices down",
            kind="table",
            time_from="7d",
            transformations=({"id": "merge", "options": {}},),
            targets=(
                Target(
                    query=select(last(schema.GATEWAY_OUTBOX_DEPTH), schema.GATEWAY, group=BRANCH),
                    expects=(schema.GATEWAY_OUTBOX_DEPTH.key,),
                    result_format="table",
                ),
                Target(
                    ref="B",
                    query=select(
                        f"{last(schema.GATEWAY_DEVICES_DOWN)}, {last(schema.GATEWAY_DROPPED)}",
                        schema.GATEWAY,
                        group=BRANCH,
                    ),
                    expects=(schema.GATEWAY_DEVICES_DOWN.key, schema.GATEWAY_DROPPED.key),
                    result_format="table",
                ),
            ),
        ),
        Panel(
            title="Energy today, per carrier",
            kind="table",
            unit="kwatth",
            time_from="now/d",
            targets=(
                Target(
                    query=select(
                        f'sum({f(schema.HOURLY_CONSUMPTION)}) AS "kwh"',
                        schema.ENERGY_HOURLY,
                        where=kwh_filter(),
                        group=f"{BRANCH}, {carrier}",
                    ),
                    expects=("kwh",),
                    result_format="table",
                ),
            ),
        ),
    )


def fleet_dashboard(fleet: Fleet) -> Dashboard:
    return Dashboard(
        uid=uid("fleet", fleet),
        title=f"Fleet overview — {fleet.name}",
        description="Every branch now: mode, people, alerts, gateway health, today's energy.",
        tags=("openbranch", fleet.id),
        time_from="now/d",
        timezone=fleet.timezone,
        panels=panels_of(),
        variables=fleet_variables(fleet),
    )


def fleet_overview(municipality: str | Fleet) -> dict[str, Any]:
    """The Grafana dashboard JSON (a bare id builds it for a fleet known only by name)."""
    fleet = (
        municipality
        if isinstance(municipality, Fleet)
        else Fleet(id=municipality, name=municipality)
    )
    return fleet_dashboard(fleet).to_json()
