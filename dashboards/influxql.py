"""InfluxQL building blocks shared by the dashboards and the alert rules, named from the schema.

Queries keep Grafana's placeholders (``$timeFilter``, ``$__interval``, ``$branch``...);
``dashboards.interpolate`` replaces them the way Grafana does. Nothing here talks to a server.
"""

from __future__ import annotations

from openbranch.edge.core import schema
from openbranch.edge.core.schedule import Mode

__all__ = [
    "BASE_LOAD_SPAN",
    "BRANCH",
    "BRANCH_FILTER",
    "DAILY_POLICY",
    "HEAT_AND_POWER",
    "HOURLY_SPAN",
    "KWH_CARRIERS",
    "KWH_HOURS",
    "LINE_HOURS",
    "NOT_EMPTY_ALERT",
    "PER_INTERVAL",
    "PER_MODE",
    "RANGE_END",
    "RAW_SPAN",
    "ROLLUP",
    "TIERED_POINTS",
    "f",
    "kwh_filter",
    "kwh_per_interval",
    "last",
    "m",
    "mode_hours",
    "newest",
    "per_mode",
    "select",
    "t",
    "tiers",
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
ROLLUP_POLICY = schema.ROLLUP_POLICY
ROLLUP = f'"{ROLLUP_POLICY}".{m(schema.BRANCH_HOURLY)}'
#: Rows a log table shows: the newest, across every selected branch (decision 99).
LOG_ROWS = 200
BRANCH_FILTER = f"{BRANCH} =~ /^($municipality)$/ AND {BRANCH} =~ /^$branch$/"
#: The daily roll-ups' retention policy: the hourly roll-ups' (and the raw lines') measurements
#: and fields again, one point per branch (and series) and UTC day (decision 101).
DAILY_POLICY = "daily"
#: Per mode, the hour's figures kept under the mode's name (``hours_staffed``...); the daily
#: roll-up adds the hours with kWh (``kwh_hours_staffed``), so a mean per hour stays exact.
PER_MODE = ("hours", "kwh", "visits", "alerts")
KWH_HOURS = "kwh_hours"
#: A line reads raw points for at most RAW_SPAN before the range's end, the hourly roll-up for
#: up to LINE_HOURS (a sum: HOURLY_SPAN) before it, the daily roll-up before that (decision
#: 102). ``${__to}`` is Grafana's global variable for the range's end, in epoch milliseconds.
RAW_SPAN, LINE_HOURS, HOURLY_SPAN, DAILY_FROM = "2d", "30d", "90d", "91d"
RANGE_END = "${__to}ms"
#: Max data points (Grafana's maxDataPoints) of a panel with a line per branch (or door, zone):
#: the interval is a day or more past HOURLY_SPAN, so no bucket adds a day's sum to hours'
#: sums, and 40 branches' lines over a year are 365 points each, not 1,460 (decision 102).
TIERED_POINTS = 90
#: The base load is judged on the range's last BASE_LOAD_SPAN of hours (decision 87's 28 days).
BASE_LOAD_SPAN = "28d"
PER_INTERVAL = "time($__interval)"
KWH_CARRIERS = (schema.Carrier.ELECTRICITY, schema.Carrier.DISTRICT_HEATING)  # water is m³
HEAT_AND_POWER = f"{t(schema.Tag.CARRIER)} =~ /^({'|'.join(KWH_CARRIERS)})$/"


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
    daily: bool = False,
) -> str:
    """``SELECT what FROM source WHERE $timeFilter AND <branch filter> [AND where] ...``;
    ``source`` is a measurement or a parenthesised subquery (which filters its own branch);
    ``rollup``: the hourly roll-up ``branch_hourly`` in its retention policy instead;
    ``daily``: the measurement's (or the roll-up's) daily roll-up, in whole UTC days.
    ``branches``: the dashboards' variables by default (alert rules have none)."""
    if daily:
        name = m(schema.BRANCH_HOURLY) if rollup else m(source)  # type: ignore[arg-type]
        conditions, origin = ["$timeFilter", branches], f'"{DAILY_POLICY}".{name}'
    elif rollup:
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


def tiers(fields: tuple[schema.Field, ...], source: schema.Measurement, *, raw: bool) -> str:
    """The subqueries a line reads as one series (one measurement name in every retention
    policy). ``raw``: a state or a mean, ``source``'s raw points for the range's last RAW_SPAN,
    its hourly roll-up (``forever``) back to LINE_HOURS, its daily roll-up (``daily``) before.
    Else a sum per interval: the hourly roll-up back to HOURLY_SPAN, the daily one before
    DAILY_FROM (between the two lies the part of a day the days cannot split: a sum per
    interval, which is then a day or more, misses at most that part of one day)."""
    end, hourly, daily = RANGE_END, ROLLUP_POLICY, DAILY_POLICY
    parts: tuple[tuple[str, str], ...]
    if raw:
        parts = (
            (m(source), f"time >= {end} - {RAW_SPAN}"),
            (
                f'"{hourly}".{m(source)}',
                f"time >= {end} - {LINE_HOURS} AND time < {end} - {RAW_SPAN}",
            ),
            (f'"{daily}".{m(source)}', f"time < {end} - {LINE_HOURS}"),
        )
    else:
        parts = (
            (f'"{hourly}".{m(source)}', f"time >= {end} - {HOURLY_SPAN}"),
            (f'"{daily}".{m(source)}', f"time < {end} - {DAILY_FROM}"),
        )
    columns = ", ".join(f(x) for x in fields)
    return ", ".join(
        f"(SELECT {columns} FROM {origin} WHERE $timeFilter AND {BRANCH_FILTER} AND {span})"  # noqa: S608
        for origin, span in parts
    )


def kwh_per_interval() -> str:
    """kWh per interval, branch and carrier (a column each): the hourly roll-up's kWh per
    carrier back to HOURLY_SPAN, the daily one's before (a panel with TIERED_POINTS, so the
    interval is then a day or more)."""
    columns = (schema.ROLLUP_ELECTRICITY, schema.ROLLUP_HEAT)
    return select(
        ", ".join(
            f'sum({f(x)}) AS "{carrier}"' for x, carrier in zip(columns, KWH_CARRIERS, strict=True)
        ),
        tiers(columns, schema.BRANCH_HOURLY, raw=False),
        group=f"{PER_INTERVAL}, {BRANCH}",
        fill="none",
    )


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
        f'sum("hours_{mode}") AS "{alias}"',
        "",
        rollup=True,
        daily=True,
        group=f"{per}, {BRANCH}",
        fill="0",
    )


def visits_per(interval: str, *, total: bool = False) -> str:
    """People in per ``interval`` (``time(1h)``, at least an hour) and branch, from the
    roll-up's visits per hour (each counter's increase, summed over the branch's counters:
    people enter by one door and may leave by another); ``total``: over the range."""
    what = f'sum({f(schema.ROLLUP_VISITS)}) AS "visits"'
    if total:
        return select(what, "", rollup=True, daily=True, group=BRANCH)
    source = tiers((schema.ROLLUP_VISITS,), schema.BRANCH_HOURLY, raw=False)
    return select(what, source, group=f"{interval}, {BRANCH}", fill="none")


def per_mode(value: str) -> str:
    """``value`` (``kwh``, ``visits`` or ``alerts``) per branch and mode, summed by the server
    from the daily roll-up's per-mode fields: for each mode its sum, and kWh's count and mean
    over the hours with kWh, or visits' and alerts' mean per hour of the mode (hours without
    any count as 0). Columns ``<mode> <value> <sum|count|mean>``."""
    columns = []
    for mode in schema.ROLLUP_MODE.choices:
        field = f'"{value}_{mode}"'
        hours = f'"{KWH_HOURS}_{mode}"' if value == schema.ROLLUP_KWH.key else f'"hours_{mode}"'
        columns.append(f'sum({field}) AS "{mode} {value} sum"')
        if value == schema.ROLLUP_KWH.key:
            columns += [f'sum({hours}) AS "{mode} {value} count"']
        else:
            columns += [f'sum({hours}) AS "{mode} hours"']
        columns += [f'sum({field}) / sum({hours}) AS "{mode} {value} mean"']
    return select(", ".join(columns), "", rollup=True, daily=True, group=BRANCH)
