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
        f'count({f(schema.ROLLUP_MODE)}) AS "{alias}"',
        "",
        rollup=True,
        where=f"{f(schema.ROLLUP_MODE)} = '{mode}'",
        group=f"{per}, {BRANCH}",
    )


def _increase(field: schema.Field, alias: str, interval: str, *, mode: bool = False) -> str:
    """Each counter's increase per ``interval`` from the roll-up's hourly highest readings
    (the first interval of the range has none: no earlier reading), per branch and device;
    ``mode``: the branch's mode at each interval's end too (a series without a device)."""
    what = f'non_negative_difference(max({f(field)})) AS "{alias}"'
    if mode:
        what += f', last({f(schema.ROLLUP_MODE)}) AS "{schema.ROLLUP_MODE.key}"'
    return select(what, "", rollup=True, group=f"{interval}, {BRANCH}, {t(schema.Tag.DEVICE)}")


def visits_per(interval: str, *, total: bool = False) -> str:
    """People in per ``interval`` (``time(1h)``, at least an hour) and branch: each counter's
    increase, summed over the branch's counters (people enter by one door and may leave by
    another); ``total``: over the whole range, per branch."""
    return select(
        'sum("visits") AS "visits"',
        f"({_increase(schema.ROLLUP_ENTERED, 'visits', interval)})",
        group=BRANCH if total else f"{interval}, {BRANCH}",
        fill="" if total else "none",
    )


def per_mode(value: str) -> str:
    """``value`` per hour and branch with the branch's mode at the hour's end, from the roll-up
    (``visits``, ``alerts`` or ``kwh``): one query for every branch selected."""
    mode = f'last({f(schema.ROLLUP_MODE)}) AS "{schema.ROLLUP_MODE.key}"'
    if value == "visits":
        inner = _increase(schema.ROLLUP_ENTERED, "visits", "time(1h)", mode=True)
        return select(
            f'sum("visits") AS "visits", {mode}',
            f"({inner})",
            group=f"time(1h), {BRANCH}",
            fill="0",
        )
    field = schema.BRANCH_HOURLY.field(value)
    fill = "0" if field is schema.ROLLUP_ALERTS else "none"  # an hour without alerts: 0
    return select(
        f'sum({f(field)}) AS "{value}", {mode}',
        "",
        rollup=True,
        group=f"time(1h), {BRANCH}",
        fill=fill,
    )
