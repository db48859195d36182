"""Energy and climate: kWh per branch and carrier, kWh/m², kWh per visitor, CO2e with factor
variables, the base load that nights and weekends leave, and the energy of closed hours.

Floor areas come from the fleet inventory (``floor_area_m2`` per branch), written to InfluxDB
as data (``branch_info``) by provisioning: the kWh/m² panel asks kWh per branch and carrier and
the areas, and Grafana joins them by branch (InfluxQL cannot join); built without an inventory,
it divides the selected branches' sum by the ``floor_area_m2`` variable.
CO2e factors are dashboard variables (g CO2e per kWh, location-based); the climate report
(``openbranch report energy``) is where factors are sourced and dated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openbranch.dashboards.common import fleet_variables, uid
from openbranch.dashboards.influxql import (
    BASE_LOAD_SPAN,
    BRANCH,
    BRANCH_FILTER,
    KWH_CARRIERS,
    RANGE_END,
    TIERED_POINTS,
    f,
    kwh_filter,
    kwh_per_interval,
    m,
    select,
    t,
    visits_per,
)
from openbranch.dashboards.model import Dashboard, Fleet, Panel, Target, Variable
from openbranch.edge.core import schema

BRANCH_KEY = schema.Tag.BRANCH.value

__all__ = ["closed_hours_panel", "energy_dashboard", "ref_id"]

# Default factors (g CO2e/kWh): placeholders of the right order, the same preliminary values
# as the report's factor table (dashboards/report/factors.yaml); set them per municipality.
DEFAULT_ELECTRICITY_G_PER_KWH = {"DK1": "110", "DK2": "95"}
DEFAULT_HEAT_G_PER_KWH = "50"


def ref_id(i: int) -> str:
    """Grafana's refIds: A..Z, then AA, AB, ..."""
    letters = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        letters = chr(ord("A") + r) + letters
    return letters


def _kwh(where: str = "", group: str = "") -> str:
    """kWh over the range from energy_hourly's daily sums (whole UTC days, decision 101)."""
    return select(
        f'sum({f(schema.HOURLY_CONSUMPTION)}) AS "kwh"',
        schema.ENERGY_HOURLY,
        where=" AND ".join(x for x in (kwh_filter(), where) if x),
        group=group,
        daily=True,
    )


def _per_m2(fleet: Fleet) -> tuple[Target, ...]:
    """kWh per carrier and branch (A, B) and the branches' floor areas as data (C,
    ``branch_info``, written by provisioning from the inventory): three queries whatever the
    number of branches, joined by branch in Grafana and divided there."""
    carrier = t(schema.Tag.CARRIER)
    if not any(b.floor_area_m2 for b in fleet.branches):
        return (
            Target(
                query=select(
                    f'sum({f(schema.HOURLY_CONSUMPTION)}) / $floor_area_m2 AS "kwh_per_m2"',
                    schema.ENERGY_HOURLY,
                    where=kwh_filter(),
                    group=carrier,
                    daily=True,
                ),
                expects=("kwh_per_m2",),
                result_format="table",
            ),
        )
    area = schema.INFO_FLOOR_AREA
    facts = (
        f"SELECT last({f(area)}) AS {f(area)}"  # noqa: S608 - schema names
        f' FROM "{schema.ROLLUP_POLICY}".{m(schema.BRANCH_INFO)} WHERE {BRANCH_FILTER}'
        f" GROUP BY {BRANCH}"
    )
    return (
        *(
            Target(
                ref=ref_id(i),
                query=_kwh(where=kwh_filter(c), group=BRANCH).replace('"kwh"', f'"{c}_kwh"'),
                expects=(f"{c}_kwh",),
                result_format="table",
            )
            for i, c in enumerate(KWH_CARRIERS)
        ),
        Target(ref="C", query=facts, expects=(area.key,), result_format="table"),
    )


def _per_m2_transformations(fleet: Fleet) -> tuple[Mapping[str, Any], ...]:
    if not any(b.floor_area_m2 for b in fleet.branches):
        return ({"id": "merge", "options": {}},)
    by_branch = {"id": "joinByField", "options": {"byField": BRANCH_KEY, "mode": "outer"}}
    return (
        by_branch,
        *(
            {
                "id": "calculateField",
                "options": {
                    "mode": "binary",
                    "binary": {
                        "left": f"{c}_kwh",
                        "operator": "/",
                        "right": schema.INFO_FLOOR_AREA.key,
                    },
                    "alias": f"{c}_kwh_per_m2",
                },
            }
            for c in KWH_CARRIERS
        ),
    )


def _visits_total() -> str:
    return visits_per("time(1h)", total=True)


def _co2e(carrier: schema.Carrier, variable: str) -> Target:
    return Target(
        ref="A" if carrier is schema.Carrier.ELECTRICITY else "B",
        query=select(
            f'sum({f(schema.HOURLY_CONSUMPTION)}) * ${variable} / 1000 AS "kg_co2e"',
            schema.ENERGY_HOURLY,
            where=kwh_filter(carrier),
            group=f"{BRANCH}, {t(schema.Tag.CARRIER)}",
            daily=True,
        ),
        expects=("kg_co2e",),
        result_format="table",
    )


def _ratio_by_branch(left: str, right: str, alias: str) -> tuple[dict[str, Any], ...]:
    """Grafana's transformations for a table of ``left / right`` per branch: the two queries'
    rows joined by branch, then the quotient as ``alias``."""
    return (
        {"id": "joinByField", "options": {"byField": schema.Tag.BRANCH.value, "mode": "inner"}},
        {
            "id": "calculateField",
            "options": {
                "mode": "binary",
                "binary": {"left": left, "operator": "/", "right": right},
                "alias": alias,
            },
        },
    )


def closed_hours_panel() -> Panel:
    """kWh in closed hours against all kWh, per branch, the largest share first: what the
    gateways judged (``closed_hours``: every whole hour the calendar had the branch closed,
    decision 86) over what they measured (``energy_hourly``), joined by branch."""
    closed = select(
        f'sum({f(schema.CLOSED_CONSUMPTION)}) AS "closed_kwh", '
        f'sum({f(schema.CLOSED_EXCESS)}) AS "waste_kwh"',
        schema.CLOSED_HOURS,
        where=kwh_filter(),
        group=BRANCH,
        daily=True,
    )
    return Panel(
        title="Closed-hours energy",
        description="kWh used while the branch was closed, of all kWh (electricity and heat);"
        " waste_kwh: what went above the closed-hour base load in hours over its margin",
        kind="table",
        transformations=_ratio_by_branch("closed_kwh", "kwh", "closed_share"),
        options={"sortBy": [{"displayName": "closed_share", "desc": True}]},
        targets=(
            Target(query=closed, expects=("closed_kwh", "waste_kwh"), result_format="table"),
            Target(ref="B", query=_kwh(group=BRANCH), expects=("kwh",), result_format="table"),
        ),
    )


def panels(fleet: Fleet) -> tuple[Panel, ...]:
    carrier = t(schema.Tag.CARRIER)
    return (
        Panel(
            title="kWh per branch and carrier",
            kind="table",
            unit="kwatth",
            targets=(
                Target(
                    query=_kwh(group=f"{BRANCH}, {carrier}"),
                    expects=("kwh",),
                    result_format="table",
                ),
            ),
        ),
        Panel(
            title="kWh per m²",
            description="floor areas from the fleet inventory (branch_info), per carrier",
            kind="table",
            unit="kwatth",
            transformations=_per_m2_transformations(fleet),
            targets=_per_m2(fleet),
        ),
        Panel(
            title="kWh per visitor",
            description="electricity and heat over visits (counter increases), joined by branch",
            kind="table",
            transformations=_ratio_by_branch("kwh", "visits", "kwh_per_visitor"),
            targets=(
                Target(query=_kwh(group=BRANCH), expects=("kwh",), result_format="table"),
                Target(ref="B", query=_visits_total(), expects=("visits",), result_format="table"),
            ),
        ),
        Panel(
            title="CO2e (location-based, factors from the variables)",
            kind="table",
            unit="masskg",
            transformations=({"id": "merge", "options": {}},),
            targets=(
                _co2e(schema.Carrier.ELECTRICITY, "co2e_electricity"),
                _co2e(schema.Carrier.DISTRICT_HEATING, "co2e_district_heating"),
            ),
        ),
        Panel(
            title="Base load (nights and weekends)",
            description="the 10th percentile of hourly kWh per carrier over the range's last 28"
            " days (the hourly roll-up): what the building draws when empty",
            kind="table",
            unit="kwatth",
            targets=(
                Target(
                    query=select(
                        ", ".join(
                            f'percentile({f(field)}, 10) AS "{carrier}"'
                            for field, carrier in (
                                (schema.ROLLUP_ELECTRICITY, schema.Carrier.ELECTRICITY),
                                (schema.ROLLUP_HEAT, schema.Carrier.DISTRICT_HEATING),
                            )
                        ),
                        "",
                        rollup=True,
                        where=f"time >= {RANGE_END} - {BASE_LOAD_SPAN}",
                        group=BRANCH,
                    ),
                    expects=tuple(KWH_CARRIERS),
                    result_format="table",
                ),
            ),
        ),
        closed_hours_panel(),
        Panel(
            title="Hourly kWh",
            kind="timeseries",
            unit="kwatth",
            interval="1h",
            max_data_points=TIERED_POINTS,
            targets=(Target(query=kwh_per_interval(), expects=KWH_CARRIERS),),
        ),
    )


def variables(fleet: Fleet) -> tuple[Variable, ...]:
    electricity = DEFAULT_ELECTRICITY_G_PER_KWH.get(fleet.price_area or "", "110")
    out = [
        *fleet_variables(fleet),
        Variable(
            name="co2e_electricity",
            label="Electricity g CO2e/kWh",
            kind="textbox",
            query=electricity,
            default=electricity,
            description=f"location-based, price area {fleet.price_area or 'unknown'} (preliminary)",
        ),
        Variable(
            name="co2e_district_heating",
            label="District heating g CO2e/kWh",
            kind="textbox",
            query=DEFAULT_HEAT_G_PER_KWH,
            default=DEFAULT_HEAT_G_PER_KWH,
            description="the heat supplier's declaration (preliminary)",
        ),
    ]
    if not any(b.floor_area_m2 for b in fleet.branches):
        out.append(
            Variable(
                name="floor_area_m2",
                label="Floor area m² of the selected branches",
                kind="textbox",
                query="1000",
                default="1000",
            )
        )
    return tuple(out)


def energy_dashboard(fleet: Fleet) -> Dashboard:
    return Dashboard(
        uid=uid("energy", fleet),
        title=f"Energy and climate — {fleet.name}",
        description="kWh, kWh/m², kWh per visitor, CO2e, base load and closed-hours energy,"
        " from energy_hourly and closed_hours.",
        tags=("openbranch", fleet.id),
        time_from="now-30d",
        timezone=fleet.timezone,
        refresh="1h",
        panels=panels(fleet),
        variables=variables(fleet),
    )
