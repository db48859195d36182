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
    "NOT_EMPTY_ALERT",
    "PER_INTERVAL",
    "ROLLUP",
    "f",
    "kwh_filter",
    "last",
    "m",
    "mode_hours",
    "newest",
    "per_mode",
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
#: The hourly roll-up in its retention policy (provisioning/influx.py's continuous queries).
ROLLUP = f'"{schema.ROLLUP_POLICY}".{m(schema.BRANCH_HOURLY)}'
#: Rows a log table shows: the newest, across every selected branch (decision 99).
LOG_ROWS = 200
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
    rollup: bool = False,
) -> str:
    """``SELECT what FROM source WHERE $timeFilter AND <branch filter> [AND where] ...``;
    ``source`` is a measurement or a parenthesised subquery (which filters its own branch);
    ``rollup``: the hourly roll-up ``branch_hourly`` in its retention policy instead.
    ``branches``: the dashboards' variables by default (alert rules have none)."""
    if rollup:
        conditions, origin = ["$timeFilter", branches], ROLLUP
    elif isinstance(source, str):
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


def newest(columns: str, source: schema.Measurement, *, where: str = "") -> str:
    """A log table: ``columns`` with the branch and kind as columns, newest first, at most
    ``LOG_ROWS`` rows over every selected branch (one series, so LIMIT bounds the answer)."""
    tags = f"{BRANCH}, {t(schema.Tag.KIND)}"
    return (
        select(f"{columns}, {tags}", source, where=where) + f" ORDER BY time DESC LIMIT {LOG_ROWS}"
    )


def mode_hours(mode: Mode, alias: str, *, per: str) -> str:
    """Hours spent in ``mode`` per ``per`` (e.g. ``time(1w)``) and branch: the roll-up's hours
    whose mode at the end was ``mode`` (the mode carried forward between its changes)."""
    return select(
        f'sum("hours_{mode}") AS "{alias}"', "", rollup=True, group=f"{per}, {BRANCH}", fill="0"
    )


def visits_per(interval: str, *, total: bool = False) -> str:
    """People in per ``interval`` (``time(1h)``, at least an hour) and branch, from the
    roll-up's visits per hour (each counter's increase, summed over the branch's counters:
    people enter by one door and may leave by another); ``total``: over the range."""
    return select(
        f'sum({f(schema.ROLLUP_VISITS)}) AS "visits"',
        "",
        rollup=True,
        group=BRANCH if total else f"{interval}, {BRANCH}",
        fill="" if total else "none",
    )


def per_mode(value: str) -> str:
    """``value`` (``kwh``, ``visits`` or ``alerts``) per branch and mode, summed by the server
    from the roll-up's per-mode fields: for each mode its sum, and kWh's count and mean over
    the hours with kWh, or visits' and alerts' mean per hour of the mode (hours without any
    count as 0). Columns ``<mode> <value> <sum|count|mean>``."""
    columns = []
    for mode in schema.ROLLUP_MODE.choices:
        field, hours = f'"{value}_{mode}"', f'"hours_{mode}"'
        columns.append(f'sum({field}) AS "{mode} {value} sum"')
        if value == schema.ROLLUP_KWH.key:
            columns += [f'count({field}) AS "{mode} {value} count"']
            columns += [f'mean({field}) AS "{mode} {value} mean"']
        else:
            columns += [f'sum({hours}) AS "{mode} hours"']
            columns += [f'sum({field}) / sum({hours}) AS "{mode} {value} mean"']
    return select(", ".join(columns), "", rollup=True, group=BRANCH)
