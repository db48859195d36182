"""InfluxQL building blocks shared by the dashboards and the alert rules, named from the schema.

Queries keep Grafana's placeholders (``$timeFilter``, ``$__interval``, ``$branch``...);
``dashboards.interpolate`` replaces them the way Grafana does. Nothing here talks to a server.
"""

from __future__ import annotations

from openbranch.edge.core import schema
from openbranch.edge.core.schedule import Mode

__all__ = [
    "BRANCH",
    "BRANCH_FILTER",
    "HEAT_AND_POWER",
    "MODE_PER_HOUR",
    "NOT_EMPTY_ALERT",
    "PER_INTERVAL",
    "f",
    "kwh_filter",
    "last",
    "m",
    "mode_hours",
    "select",
    "t",
    "visits_per",
]

NOT_EMPTY_ALERT = "not_empty"  # edge/engine.py's alert kind: people left after closing + grace


def m(measurement: schema.Measurement) -> str:
    """A measurement, quoted."""
    return f'"{measurement.name}"'


def f(field: schema.Field) -> str:
    """A field key, quoted."""
    return f'"{field.key}"'


def t(tag: schema.Tag) -> str:
    """A tag key, quoted."""
    return f'"{tag.value}"'


BRANCH = t(schema.Tag.BRANCH)
BRANCH_FILTER = f"{BRANCH} =~ /^($municipality)$/ AND {BRANCH} =~ /^$branch$/"
PER_INTERVAL = "time($__interval)"
_KWH_CARRIERS = (schema.Carrier.ELECTRICITY, schema.Carrier.DISTRICT_HEATING)  # water is m³
HEAT_AND_POWER = f"{t(schema.Tag.CARRIER)} =~ /^({'|'.join(_KWH_CARRIERS)})$/"


def last(field: schema.Field, alias: str | None = None) -> str:
    return f'last({f(field)}) AS "{alias or field.key}"'


ALERT_COLUMNS = (schema.ALERT_ACTIVE, schema.ALERT_SEVERITY, schema.ALERT_MESSAGE)


def alert_columns(latest: bool = False) -> str:
    """The alert table's columns: active, severity, message (each its last value if
    ``latest``, else every point)."""
    return ", ".join(last(x) if latest else f(x) for x in ALERT_COLUMNS)


def select(
    what: str,
    source: schema.Measurement | str,
    *,
    where: str = "",
    group: str = "",
    fill: str = "",
    branches: str = BRANCH_FILTER,
) -> str:
    """``SELECT what FROM source WHERE $timeFilter AND <branch filter> [AND where] ...``;
    ``source`` is a measurement or a parenthesised subquery (which filters its own branch).
    ``branches``: the dashboards' variables by default (alert rules have none)."""
    if isinstance(source, str):
        conditions, origin = ["$timeFilter"], source
    else:
        conditions, origin = ["$timeFilter", branches], m(source)
    if where:
        conditions.append(where)
    text = f"SELECT {what} FROM {origin} WHERE {' AND '.join(conditions)}"  # noqa: S608 - schema names
    if group:
        text += f" GROUP BY {group}"
    if fill:
        text += f" fill({fill})"
    return text


def kwh_filter(carrier: schema.Carrier | None = None) -> str:
    return f"{t(schema.Tag.CARRIER)} = '{carrier}'" if carrier else HEAT_AND_POWER


MODE_PER_HOUR = select(  # the mode at the end of each hour (mode changes are written once)
    last(schema.BRANCH_MODE_MODE), schema.BRANCH_MODE, group="time(1h)", fill="previous"
)


def mode_hours(mode: Mode, alias: str, *, per: str) -> str:
    """Hours spent in ``mode`` per ``per`` (e.g. ``time(1w)``) and branch, at 5-minute
    resolution: the mode is carried forward between its changes (fill(previous))."""
    inner = select(
        last(schema.BRANCH_MODE_MODE),
        schema.BRANCH_MODE,
        group=f"time(5m), {BRANCH}",
        fill="previous",
    )
    return select(
        f'count({f(schema.BRANCH_MODE_MODE)}) / 12 AS "{alias}"',
        f"({inner})",
        where=f"{f(schema.BRANCH_MODE_MODE)} = '{mode}'",
        group=f"{per}, {BRANCH}",
    )


def visits_per(interval: str, *, by_branch: bool = True) -> str:
    """People in per ``interval`` (``time(1h)``): each counter's increase, summed over the
    branch's counters (people enter by one door and may leave by another)."""
    device = t(schema.Tag.DEVICE)
    inner = select(
        f'non_negative_difference(max({f(schema.OCCUPANCY_ENTERED)})) AS "visits"',
        schema.OCCUPANCY,
        group=f"{interval}, {BRANCH}, {device}",
    )
    return select(
        'sum("visits") AS "visits"',
        f"({inner})",
        group=f"{interval}, {BRANCH}" if by_branch else interval,
        fill="none" if by_branch else "0",
    )
