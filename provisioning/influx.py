"""InfluxDB 1.x setup from the inventory: the database, retention policies, continuous
queries that keep hourly data forever after the raw data expires, and the branches' facts
(floor areas) as data. Applied idempotently: the server is read first and only what differs is
changed, so a second apply changes nothing.

The hourly roll-up ``branch_hourly`` (schema.BRANCH_HOURLY, in the ``forever`` policy) is what
dashboards read over weeks and years (decision 97). Its continuous queries recompute a window
of recent hours on every run (``RESAMPLE ... FOR``): the counters every minute over two hours
(the running hour is current within a minute), the rest every hour over seven days, so hours a
gateway delivers late (an outbox draining after an outage) are still rolled up. ``backfill``
rolls up any span once: history loaded before the queries existed, or a backlog older than
seven days.

Beside it, the lines the Branch dashboard draws from raw points (doors, indoor climate, light
levels) are rolled up per hour into ``forever`` under their own measurement and field names,
and every roll-up again per UTC day into the ``daily`` policy (``branch_hourly``'s sums, the
doors' last state, the climate's and lights' means, ``energy_hourly`` and ``closed_hours``
summed): a panel reads raw points for the last days of its range, the hours before, and the
days before that, as one series (decisions 101, 102).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openbranch.dashboards.influxql import DAILY_POLICY, KWH_HOURS, PER_MODE
from openbranch.edge.core import schema
from openbranch.edge.core.admission import PERSONAL_AUDIT_KINDS

__all__ = ["InfluxSetup", "apply", "backfill", "purge_personal", "setup_for"]

RAW, FOREVER, DAILY = "raw", schema.ROLLUP_POLICY, DAILY_POLICY
_HOUR_NS = 3600 * 10**9
_DAY_NS = 24 * _HOUR_NS
_BACKFILL_STEP_NS = 30 * 24 * _HOUR_NS
_LOOKBACK_NS = 7 * 24 * _HOUR_NS  # RESAMPLE FOR 7d: what a looking-back roll-up sees


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    name: str
    duration: str  # InfluxQL duration: 400d, INF
    default: bool
    shard: str = ""  # shard group duration in weeks ("52w"); empty: InfluxDB's (7 days here)


@dataclass(frozen=True, slots=True)
class ContinuousQuery:
    name: str
    select: str  # the SELECT ... INTO ... FROM ... [WHERE ...] GROUP BY ... of the query
    resample: str = ""  # "EVERY 1m FOR 2h"; empty: InfluxDB's default (the last interval)
    carries: bool = False  # fill(previous): a backfill must not cut the span into windows
    backfilled: bool = True  # a roll-up ``backfill`` runs (the plain copy of energy_hourly: not)


@dataclass(frozen=True, slots=True)
class InfluxSetup:
    database: str
    policies: tuple[RetentionPolicy, ...]
    queries: tuple[ContinuousQuery, ...]
    floor_areas: Mapping[str, float] = field(default_factory=dict)  # branch id -> m²

    def statements(self) -> list[str]:
        """The InfluxQL that creates everything (for review; ``apply`` is smarter)."""
        db = self.database
        out = [f'CREATE DATABASE "{db}"']
        out += [_create_rp(db, rp) for rp in self.policies]
        out += [_create_cq(db, cq) for cq in self.queries]
        return out


def _ident(name: str) -> str:
    """A name fit to stand between double quotes in InfluxQL."""
    if not name or any(c in name for c in '"\\\n'):
        raise ValueError(f"{name!r} cannot be an InfluxDB name")
    return name


def _create_rp(db: str, rp: RetentionPolicy) -> str:
    default = " DEFAULT" if rp.default else ""
    shard = f" SHARD DURATION {rp.shard}" if rp.shard else ""
    return (
        f'CREATE RETENTION POLICY "{rp.name}" ON "{db}" DURATION {rp.duration}'
        f" REPLICATION 1{shard}{default}"
    )


def _create_cq(db: str, cq: ContinuousQuery) -> str:
    resample = f" RESAMPLE {cq.resample}" if cq.resample else ""
    return f'CREATE CONTINUOUS QUERY "{cq.name}" ON "{db}"{resample} BEGIN {cq.select} END'


def setup_for(
    database: str, *, raw_days: int = 400, floor_areas: Mapping[str, float] | None = None
) -> InfluxSetup:
    hourly = schema.ENERGY_HOURLY.name
    consumption, coverage = schema.HOURLY_CONSUMPTION.key, schema.HOURLY_COVERAGE.key
    database = _ident(database)
    src, dst = f'"{database}"."{RAW}"', f'"{database}"."{FOREVER}"'
    return InfluxSetup(
        database=database,
        policies=(
            RetentionPolicy(RAW, f"{raw_days}d", default=True),
            # a query reads every shard its range touches: a year of roll-ups in 52 weekly
            # shards cost 20x one shard's (decision 101)
            RetentionPolicy(FOREVER, "INF", default=False, shard="26w"),
            RetentionPolicy(DAILY, "INF", default=False, shard="104w"),
        ),
        queries=(
            ContinuousQuery(
                f"cq_{hourly}_forever",
                f'SELECT sum("{consumption}") AS "{consumption}",'  # noqa: S608 - schema names
                f' mean("{coverage}") AS "{coverage}"'
                f' INTO {dst}."{hourly}" FROM {src}."{hourly}" GROUP BY time(1h), *',
                backfilled=False,
            ),
            *_rollups(src, f'{dst}."{schema.BRANCH_HOURLY.name}"'),
            *_line_rollups(src, dst),
            *_daily_rollups(src, dst, f'"{database}"."{DAILY}"'),
        ),
        floor_areas=dict(floor_areas or {}),
    )


def _rollups(src: str, into: str) -> tuple[ContinuousQuery, ...]:
    """The continuous queries that fill ``branch_hourly`` (one per source measurement; they
    write different fields of the same hourly point of a branch)."""
    branch, device = f'"{schema.Tag.BRANCH}"', f'"{schema.Tag.DEVICE}"'
    entered, exited = schema.OCCUPANCY_ENTERED.key, schema.OCCUPANCY_EXITED.key
    kwh_carriers = "|".join((schema.Carrier.ELECTRICITY, schema.Carrier.DISTRICT_HEATING))
    week = "EVERY 1h FOR 7d"
    return (
        ContinuousQuery(
            f"cq_{schema.OCCUPANCY.name}_hourly",
            f'SELECT max("{entered}") AS "{schema.ROLLUP_ENTERED.key}",'  # noqa: S608
            f' max("{exited}") AS "{schema.ROLLUP_EXITED.key}" INTO {into}'
            f' FROM {src}."{schema.OCCUPANCY.name}" GROUP BY time(1h), {branch}, {device}',
            resample="EVERY 1m FOR 2h",
        ),
        ContinuousQuery(
            f"cq_{schema.BRANCH_MODE.name}_hourly",
            f'SELECT last("{schema.BRANCH_MODE_MODE.key}") AS "{schema.ROLLUP_MODE.key}"'  # noqa: S608
            f' INTO {into} FROM {src}."{schema.BRANCH_MODE.name}"'
            f" GROUP BY time(1h), {branch} fill(previous)",
            resample=week,
            carries=True,
        ),
        *(
            ContinuousQuery(
                f"cq_{schema.ENERGY_HOURLY.name}_{name}",
                f'SELECT sum("{schema.HOURLY_CONSUMPTION.key}") AS "{field}"'  # noqa: S608
                f' INTO {into} FROM {src}."{schema.ENERGY_HOURLY.name}"'
                f' WHERE "{schema.Tag.CARRIER}" =~ /^({carriers})$/'
                f" GROUP BY time(1h), {branch}",
                resample=week,
            )
            for name, field, carriers in (
                ("kwh", schema.ROLLUP_KWH.key, kwh_carriers),
                ("electricity", schema.ROLLUP_ELECTRICITY.key, schema.Carrier.ELECTRICITY),
                ("heat", schema.ROLLUP_HEAT.key, schema.Carrier.DISTRICT_HEATING),
            )
        ),
        ContinuousQuery(
            f"cq_{schema.ALERT.name}_hourly",
            f'SELECT count("{schema.ALERT_ACTIVE.key}") AS "{schema.ROLLUP_ALERTS.key}"'  # noqa: S608
            f' INTO {into} FROM {src}."{schema.ALERT.name}"'
            f" WHERE {device} = '{schema.GATEWAY_DEVICE}' AND \"{schema.ALERT_ACTIVE.key}\" = true"
            f" GROUP BY time(1h), {branch}",
            resample=week,
        ),
        ContinuousQuery(  # from the counters' hourly highest readings, rolled up above
            f"cq_{schema.OCCUPANCY.name}_visits",
            f'SELECT sum("v") AS "{schema.ROLLUP_VISITS.key}",'  # noqa: S608
            f' sum("n") AS "{schema.ROLLUP_NET.key}" INTO {into}'
            f' FROM (SELECT non_negative_difference(max("{entered}")) AS "v",'
            f' difference(max("{entered}")) - difference(max("{exited}")) AS "n"'
            f" FROM {into} GROUP BY time(1h), {branch}, {device})"
            f" GROUP BY time(1h), {branch}",
            resample="EVERY 5m FOR 7d",
            carries=True,
        ),
        *(  # last: from the mode and the figures above, the hour's figures under its mode
            ContinuousQuery(
                f"cq_{schema.BRANCH_HOURLY.name}_{mode}",
                f'SELECT count("{schema.ROLLUP_MODE.key}") AS "hours_{mode}",'  # noqa: S608
                f' sum("{schema.ROLLUP_KWH.key}") AS "kwh_{mode}",'
                f' sum("{schema.ROLLUP_VISITS.key}") AS "visits_{mode}",'
                f' sum("{schema.ROLLUP_ALERTS.key}") AS "alerts_{mode}" INTO {into} FROM {into}'
                f" WHERE \"{schema.ROLLUP_MODE.key}\" = '{mode}' GROUP BY time(1h), {branch}",
                resample=week,
            )
            for mode in schema.ROLLUP_MODE.choices
        ),
    )


#: Raw measurements a panel draws as lines, rolled up per hour and per day under their own
#: names and fields: the aggregate that keeps the line's meaning, the fields, the series' tags.
_Line = tuple[schema.Measurement, str, tuple[schema.Field, ...], tuple[schema.Tag, ...]]
_LINES: tuple[_Line, ...] = (
    (schema.DOOR, "last", (schema.DOOR_OPEN, schema.DOOR_LOCKED), (schema.Tag.DEVICE,)),
    (
        schema.INDOOR,
        "mean",
        (schema.INDOOR_TEMPERATURE, schema.INDOOR_CO2),
        (schema.Tag.DEVICE, schema.Tag.ZONE),
    ),
    (schema.LIGHT, "mean", (schema.LIGHT_LEVEL,), (schema.Tag.DEVICE, schema.Tag.ZONE)),
)


def _line_select(line: _Line, into: str, src: str, per: str) -> str:
    measurement, how, fields, tags = line
    columns = ", ".join(f'{how}("{x.key}") AS "{x.key}"' for x in fields)
    by = ", ".join(f'"{tag}"' for tag in (schema.Tag.BRANCH, *tags))
    return (
        f'SELECT {columns} INTO {into}."{measurement.name}"'  # noqa: S608 - schema names
        f' FROM {src}."{measurement.name}" GROUP BY time({per}), {by}'
    )


def _line_rollups(src: str, dst: str) -> tuple[ContinuousQuery, ...]:
    """Doors' last state, the climate's and lights' means per hour, into ``forever``."""
    return tuple(
        ContinuousQuery(
            f"cq_{line[0].name}_hourly", _line_select(line, dst, src, "1h"), "EVERY 1h FOR 7d"
        )
        for line in _LINES
    )


def _q(name: str) -> str:
    return f'"{name}"'


def _sums(fields: list[schema.Field] | tuple[schema.Field, ...]) -> str:
    return ", ".join(f"sum({_q(x.key)}) AS {_q(x.key)}" for x in fields)


def _daily_rollups(src: str, hourly: str, daily: str) -> tuple[ContinuousQuery, ...]:
    """Every hourly roll-up again per UTC day, into ``daily`` under the same names (a day is a
    UTC day: InfluxDB's buckets; decision 101); last, after the hourly ones they read."""
    every = "EVERY 1h FOR 8d"  # the hourly ones look back 7 days, and a day more
    sums = [
        schema.ROLLUP_VISITS,
        schema.ROLLUP_NET,
        schema.ROLLUP_KWH,
        schema.ROLLUP_ELECTRICITY,
        schema.ROLLUP_HEAT,
        schema.ROLLUP_ALERTS,
    ]
    columns = [_sums(sums)]
    for mode in schema.ROLLUP_MODE.choices:
        columns += [f'sum("{what}_{mode}") AS "{what}_{mode}"' for what in PER_MODE]
        columns.append(f'count("kwh_{mode}") AS "{KWH_HOURS}_{mode}"')
    name, branch = schema.BRANCH_HOURLY.name, f'"{schema.Tag.BRANCH}"'
    energy = tuple(
        ContinuousQuery(
            f"cq_{m.name}_daily",
            f"SELECT {_sums(fields)} INTO {daily}.{_q(m.name)}"  # noqa: S608 - schema names
            f" FROM {src}.{_q(m.name)} GROUP BY time(1d), *",
            every,
        )
        for m, fields in (
            (schema.ENERGY_HOURLY, (schema.HOURLY_CONSUMPTION,)),
            (schema.CLOSED_HOURS, (schema.CLOSED_CONSUMPTION, schema.CLOSED_EXCESS)),
        )
    )
    return (
        ContinuousQuery(
            f"cq_{name}_daily",
            f"SELECT {', '.join(columns)} INTO {daily}.{_q(name)}"  # noqa: S608 - schema names
            f" FROM {hourly}.{_q(name)} GROUP BY time(1d), {branch}",
            every,
        ),
        *(
            ContinuousQuery(
                f"cq_{line[0].name}_daily", _line_select(line, daily, hourly, "1d"), every
            )
            for line in _LINES
        ),
        *energy,
    )


def backfill(url: str, setup: InfluxSetup, start_ns: int, end_ns: int) -> int:
    """Run every roll-up once over [start_ns, end_ns) (from the start's UTC midnight); return the
    points written.

    The continuous queries only see recent hours: this rolls up history (data loaded before
    they existed, a backlog delivered more than seven days late), in their order (later ones
    read what earlier ones wrote), a month per request; a query that looks back (the mode
    carried forward, the counters' increases) starts each month seven days early."""
    start_ns -= start_ns % _DAY_NS  # whole UTC days: a month's step never cuts a day in two
    written = 0
    for cq in setup.queries:
        if not cq.backfilled:
            continue
        lo = start_ns
        while lo < end_ns:
            hi = min(end_ns, lo + _BACKFILL_STEP_NS)
            since = lo - _LOOKBACK_NS if cq.carries else lo
            for result in _query(url, _bounded(cq.select, since, hi), setup.database):
                for row in _rows(result):
                    written += int(row.get("written", 0))
            lo = hi
    return written


def _bounded(select: str, lo: int, hi: int) -> str:
    """``select`` limited to [lo, hi) in its outer statement (a subquery gets the outer's time
    range): its WHERE gets the time condition, or one is added before its GROUP BY."""
    span = f"time >= {lo} AND time < {hi}"
    head, outer = "", select
    if " FROM (" in select:  # the outer statement starts after the subquery's parenthesis
        depth, at = 0, select.index(" FROM (") + len(" FROM ")
        for i in range(at, len(select)):
            depth += {"(": 1, ")": -1}.get(select[i], 0)
            if depth == 0:
                head, outer = select[: i + 1], select[i + 1 :]
                break
    front, where, rest = outer.partition(" WHERE ")
    if where:
        bounded = f"{front} WHERE {span} AND {rest}"
    else:
        front, group, rest = outer.partition(" GROUP BY ")
        bounded = f"{front} WHERE {span}{group}{rest}"
    return f"{head}{bounded}"


def _facts(setup: InfluxSetup) -> str:
    """The branches' floor areas as line protocol, one point at the epoch per branch."""
    measurement, key = schema.BRANCH_INFO.name, schema.INFO_FLOOR_AREA.key
    return "\n".join(
        f"{measurement},{schema.Tag.BRANCH}={_tag(branch)} {key}={float(area)!r} 0"
        for branch, area in sorted(setup.floor_areas.items())
    )


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def purge_personal(url: str, database: str, *, days: int, now_ns: int) -> int:
    """Delete the audit records that carry a card's pseudonym (entry decisions, lockouts)
    older than ``days``, in every retention policy; returns how many there were. The gateway
    deletes its own copies (edge.runtime.allowlist); this is the central copy's retention."""
    kind = f'"{_ident(schema.Tag.KIND.value)}"'
    kinds = " OR ".join(f"{kind} = '{k}'" for k in PERSONAL_AUDIT_KINDS)
    where = f"({kinds}) AND time < {now_ns - days * 24 * _HOUR_NS}"
    audit, message = f'"{_ident(schema.AUDIT.name)}"', f'"{_ident(schema.AUDIT_MESSAGE.key)}"'
    # names from the schema, kinds from edge.core.admission, a number: nothing from outside
    select = f"SELECT count({message}) FROM {audit} WHERE {where}"  # noqa: S608
    counted = _rows(_query(url, select, database)[0])
    found = sum(int(row["count"]) for row in counted)
    if found:
        _query(url, f"DELETE FROM {audit} WHERE {where}", database)  # noqa: S608
    return found


def _write(url: str, db: str, policy: str, lines: str) -> None:
    params = urllib.parse.urlencode({"db": db, "rp": policy, "precision": "n"})
    request = urllib.request.Request(  # noqa: S310 - the operator's own InfluxDB URL
        f"{url.rstrip('/')}/write?{params}", data=lines.encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30):  # noqa: S310
        pass


def _query(url: str, q: str, db: str | None = None) -> list[dict[str, Any]]:
    params = {"q": q} | ({"db": db} if db else {})
    method = "GET" if q.startswith("SHOW") else "POST"
    request = urllib.request.Request(  # noqa: S310 - the operator's own InfluxDB URL
        f"{url.rstrip('/')}/query?{urllib.parse.urlencode(params)}", method=method
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        answer = json.loads(response.read())
    results: list[dict[str, Any]] = answer.get("results", [])
    for result in results:
        if "error" in result:
            raise RuntimeError(f"InfluxDB: {q}: {result['error']}")
    return results


def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for series in result.get("series", []):
        rows += [
            dict(zip(series["columns"], values, strict=True)) for values in series.get("values", [])
        ]
    return rows


def _duration_matches(shown: str, wanted: str) -> bool:
    if wanted == "INF":
        return shown in ("0s", "0")
    days = int(wanted[:-1]) * (7 if wanted.endswith("w") else 1)
    return shown == f"{days * 24}h0m0s"


def apply(url: str, setup: InfluxSetup) -> list[str]:
    """Make the server match ``setup``; return what changed (empty when nothing did)."""
    db = setup.database
    changes: list[str] = []
    databases = {r["name"] for r in _rows(_query(url, "SHOW DATABASES")[0])}
    if db not in databases:
        _query(url, f'CREATE DATABASE "{db}"')
        changes.append(f"created database {db}")
    policies = {r["name"]: r for r in _rows(_query(url, f'SHOW RETENTION POLICIES ON "{db}"')[0])}
    for rp in setup.policies:
        have = policies.get(rp.name)
        if have is None:
            _query(url, _create_rp(db, rp))
            changes.append(f"created retention policy {rp.name}")
        elif (
            not _duration_matches(have["duration"], rp.duration)
            or bool(have["default"]) != rp.default
            or (rp.shard and not _duration_matches(have["shardGroupDuration"], rp.shard))
        ):
            default = " DEFAULT" if rp.default else ""
            shard = f" SHARD DURATION {rp.shard}" if rp.shard else ""
            _query(
                url,
                f'ALTER RETENTION POLICY "{rp.name}" ON "{db}" DURATION {rp.duration}'
                f"{shard}{default}",
            )
            changes.append(f"altered retention policy {rp.name}")
    shown = _query(url, "SHOW CONTINUOUS QUERIES")[0]
    existing = {}
    for series in shown.get("series", []):
        if series.get("name") == db:
            existing = {values[0]: values[1] for values in series.get("values", [])}
    for cq in setup.queries:
        have_text = existing.get(cq.name)
        if have_text is not None and _normal(cq.select) in _normal(have_text):
            continue
        if have_text is not None:
            _query(url, f'DROP CONTINUOUS QUERY "{cq.name}" ON "{db}"')
        _query(url, _create_cq(db, cq))
        changes.append(f"{'replaced' if have_text else 'created'} continuous query {cq.name}")
    if setup.floor_areas:
        key = schema.INFO_FLOOR_AREA.key
        shown = _query(
            url,
            f'SELECT last("{key}") AS "{key}" FROM "{FOREVER}"."{schema.BRANCH_INFO.name}"'  # noqa: S608
            f' GROUP BY "{schema.Tag.BRANCH}"',
            db,
        )[0]
        have = {
            s["tags"][schema.Tag.BRANCH]: float(s["values"][0][1]) for s in shown.get("series", [])
        }
        stale = {b: a for b, a in setup.floor_areas.items() if have.get(b) != float(a)}
        if stale:
            _write(url, db, FOREVER, _facts(InfluxSetup(db, (), (), stale)))
            changes.append(f"wrote the floor area of {len(stale)} branch(es)")
    return changes


def _normal(text: str) -> str:
    return " ".join(text.replace('"', "").split()).lower()
