"""InfluxDB 1.x setup from the inventory: the database, retention policies, and continuous
queries that keep hourly data forever after the raw data expires. Applied idempotently: the
server is read first and only what differs is changed, so a second apply changes nothing.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from openbranch.edge.core import schema

__all__ = ["InfluxSetup", "apply", "setup_for"]

RAW, FOREVER = "raw", "forever"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    name: str
    duration: str  # InfluxQL duration: 400d, INF
    default: bool


@dataclass(frozen=True, slots=True)
class ContinuousQuery:
    name: str
    select: str  # the SELECT ... INTO ... GROUP BY ... of the query


@dataclass(frozen=True, slots=True)
class InfluxSetup:
    database: str
    policies: tuple[RetentionPolicy, ...]
    queries: tuple[ContinuousQuery, ...]

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
    return (
        f'CREATE RETENTION POLICY "{rp.name}" ON "{db}" DURATION {rp.duration}'
        f" REPLICATION 1{default}"
    )


def _create_cq(db: str, cq: ContinuousQuery) -> str:
    return f'CREATE CONTINUOUS QUERY "{cq.name}" ON "{db}" BEGIN {cq.select} END'


def setup_for(database: str, *, raw_days: int = 400) -> InfluxSetup:
    hourly, occupancy = schema.ENERGY_HOURLY.name, schema.OCCUPANCY.name
    consumption, coverage = schema.HOURLY_CONSUMPTION.key, schema.HOURLY_COVERAGE.key
    present = schema.OCCUPANCY_PRESENT.key
    database = _ident(database)
    src, dst = f'"{database}"."{RAW}"', f'"{database}"."{FOREVER}"'
    return InfluxSetup(
        database=database,
        policies=(
            RetentionPolicy(RAW, f"{raw_days}d", default=True),
            RetentionPolicy(FOREVER, "INF", default=False),
        ),
        queries=(
            ContinuousQuery(
                f"cq_{hourly}_forever",
                f'SELECT sum("{consumption}") AS "{consumption}",'  # noqa: S608 - schema names
                f' mean("{coverage}") AS "{coverage}"'
                f' INTO {dst}."{hourly}" FROM {src}."{hourly}" GROUP BY time(1h), *',
            ),
            ContinuousQuery(
                f"cq_{occupancy}_hourly",
                f'SELECT max("{present}") AS "{present}" INTO {dst}."{occupancy}"'  # noqa: S608
                f' FROM {src}."{occupancy}" GROUP BY time(1h), *',
            ),
        ),
    )


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
    return shown == f"{int(wanted.removesuffix('d')) * 24}h0m0s"


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
        ):
            default = " DEFAULT" if rp.default else ""
            _query(
                url, f'ALTER RETENTION POLICY "{rp.name}" ON "{db}" DURATION {rp.duration}{default}'
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
    return changes


def _normal(text: str) -> str:
    return " ".join(text.replace('"', "").split()).lower()
