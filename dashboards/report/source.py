"""Where the report's numbers come from: InfluxDB (InfluxQL) or one gateway's local store.

Both sources give the same three streams, in the same types, so the report is computed by one
piece of code whichever it reads:

- ``hours``: the ``energy_hourly`` rows (consumption, quality, coverage of each UTC hour);
- ``register_days``: per meter and UTC day, the first, lowest, highest and last ``energy``
  register reading (to count meter resets without moving every raw reading);
- ``entered``: each people counter's last ``entered`` of every hour (visitors).

Besides them, ``points`` gives every point of any measurement (the branch mode for the annual
statistics, the utility's hours for the reconciliation), fields typed as the schema says.

Numbers stay exact: a float field becomes the Decimal of its shortest repr, which is the text
the gateway wrote into the line protocol (``repr(float)``) and what InfluxDB gives back, so both
sources agree to the last digit.

Exceptions: ``SourceError`` when a source cannot be read (unknown store, server error).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import influxdb

from openbranch.edge.core import schema
from openbranch.edge.telemetry.outbox import Outbox

__all__ = [
    "Counter",
    "HourRow",
    "InfluxSource",
    "MeterRuns",
    "MeterSums",
    "Point",
    "RegisterDay",
    "Source",
    "SourceError",
    "StoreSource",
    "influx_client",
    "parse_fields",
]

HOUR_NS = 3_600 * 10**9
_WINDOW_NS = 31 * 24 * HOUR_NS  # InfluxQL queries go a month at a time (bounded answers)
_STORE_WINDOW_NS = 7 * 24 * HOUR_NS
_BRANCH, _DEVICE, _CARRIER = (
    t.value for t in (schema.Tag.BRANCH, schema.Tag.DEVICE, schema.Tag.CARRIER)
)


class SourceError(RuntimeError):
    """A source that cannot be read: a missing store, an unreachable or refusing server."""


@dataclass(frozen=True, slots=True)
class HourRow:
    """One ``energy_hourly`` point."""

    branch: str
    device: str
    carrier: str
    hour_ns: int  # start of the UTC hour
    consumption: Decimal
    quality: str
    coverage: Decimal


@dataclass(frozen=True, slots=True)
class Counter:
    """One reading of a counter (an energy register, a people counter's ``entered``)."""

    branch: str
    device: str
    carrier: str  # "" for people counters
    time_ns: int
    value: Decimal


@dataclass(frozen=True, slots=True)
class RegisterDay:
    """One meter's register over one UTC day: first, lowest, highest and last reading."""

    branch: str
    device: str
    carrier: str
    day_ns: int  # start of the UTC day
    first: Decimal
    low: Decimal
    high: Decimal
    last: Decimal


@dataclass(frozen=True, slots=True)
class MeterSums:
    """One meter's ``energy_hourly`` over one span, summed where the data is (InfluxDB):
    hours and consumption in all, measured and interpolated."""

    branch: str
    device: str
    carrier: str
    span: int  # the index of the span asked for
    hours: int
    consumption: Decimal
    measured_hours: int
    measured: Decimal
    interpolated_hours: int
    interpolated: Decimal


@dataclass(frozen=True, slots=True)
class MeterRuns:
    """One meter's present hours over a period, as runs: its first and last hour, the gaps
    between present hours, and the interpolated hours that directly follow another."""

    branch: str
    device: str
    carrier: str
    first_hour_ns: int
    last_hour_ns: int
    gaps: int
    interpolated_continued: int


@dataclass(frozen=True, slots=True)
class Point:
    """One point of any measurement: its tags, its fields (numbers as Decimal) and its time."""

    tags: Mapping[str, str]
    fields: Mapping[str, str | Decimal | bool]
    time_ns: int


DAY_NS = 24 * HOUR_NS


class Source(Protocol):
    """What the report reads. Times are ns since the epoch; ``end_ns`` is exclusive;
    ``branches`` None means every branch the source holds."""

    description: str

    def hours(
        self, start_ns: int, end_ns: int, branches: Sequence[str] | None
    ) -> Iterator[HourRow]: ...

    def register_days(
        self, start_ns: int, end_ns: int, branches: Sequence[str] | None
    ) -> Iterator[RegisterDay]:
        """``start_ns`` and ``end_ns`` on UTC day boundaries."""
        ...

    def entered(
        self, start_ns: int, end_ns: int, branches: Sequence[str] | None
    ) -> Iterator[Counter]:
        """Each people counter's last ``entered`` of every UTC hour (stamped at its start)."""
        ...

    def points(
        self,
        measurement: schema.Measurement,
        start_ns: int,
        end_ns: int,
        branches: Sequence[str] | None,
    ) -> Iterator[Point]:
        """Every point of ``measurement`` in [start_ns, end_ns)."""
        ...

    def close(self) -> None: ...


def _decimal(value: object) -> Decimal:
    if isinstance(value, bool):
        raise SourceError(f"a boolean {value!r} where a number was expected")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        return Decimal(value.removesuffix("i"))
    raise SourceError(f"{value!r} is not a number")


# -- InfluxDB --------------------------------------------------------------------------------


def _points(series: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one series of an InfluxQL answer as column -> value."""
    columns = series.get("columns", [])
    return [dict(zip(columns, values, strict=True)) for values in series.get("values", [])]


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def influx_client(
    *,
    url: str,
    database: str,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 60.0,
) -> influxdb.InfluxDBClient:
    """The v1 API client for ``url`` (``http(s)://host:port[/path]``); SourceError otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"InfluxDB URL {url!r}: expected http(s)://host:port")
    return influxdb.InfluxDBClient(
        host=parts.hostname,
        port=parts.port or (443 if parts.scheme == "https" else 8086),
        ssl=parts.scheme == "https",
        verify_ssl=parts.scheme == "https",
        database=database,
        username=username,
        password=password,
        timeout=timeout,
        path=parts.path.strip("/"),
    )


class InfluxSource:
    """InfluxQL over the v1 query API (InfluxDB 1.x, 2.x's v1 API, 3.x), every branch.

    ``url`` like ``http://influx.example:8086``; queries go a month of time at a time.
    ``summed``: the energy report asks for each meter's sums per month instead of its hours
    (decision 100): fast at national scale, to the last ~15 digits instead of every digit.
    """

    def __init__(
        self,
        *,
        url: str,
        database: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
        summed: bool = False,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        self.description = f"InfluxDB {parts.scheme}://{parts.netloc}, database {database}"
        #: the report may ask the server for each meter's sums per month (``hour_sums``):
        #: float64 sums, equal to the exact decimal ones to about 1e-15 of their size
        self.summed = summed
        self._client = influx_client(
            url=url, database=database, username=username, password=password, timeout=timeout
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> InfluxSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _series(
        self,
        *,
        measurement: schema.Measurement,
        fields: Sequence[schema.Field],
        group: Sequence[schema.Tag],
        start_ns: int,
        end_ns: int,
        branches: Sequence[str] | None,
        select: str = "",
        every: str = "",
    ) -> Iterator[tuple[dict[str, str], list[Any]]]:
        """Points per series, a window of time per query (windows start at ``start_ns`` and
        are whole days long, so ``GROUP BY time(1d)`` buckets never straddle two queries)."""
        select = select or ", ".join(_quote_ident(f.key) for f in fields)
        where = ""
        if branches:
            where = (
                " AND ("
                + " OR ".join(
                    f"{_quote_ident(schema.Tag.BRANCH.value)} = {_quote_str(b)}" for b in branches
                )
                + ")"
            )
        by = ", ".join(_quote_ident(t.value) for t in group)
        if every:
            by = f"time({every}), {by}"
        fill = " fill(none)" if every else ""
        step = DAY_NS if every == "1d" else HOUR_NS  # a split never cuts a GROUP BY bucket

        def window(lo: int, hi: int) -> list[tuple[dict[str, str], list[Any]]]:
            q = (
                f"SELECT {select} FROM {_quote_ident(measurement.name)}"  # noqa: S608 - quoted
                f" WHERE time >= {lo} AND time < {hi}{where} GROUP BY {by}{fill}"
            )
            try:
                answer = self._client.query(q, epoch="ns")
            except Exception as exc:  # the client raises requests' and its own errors
                raise SourceError(f"{self.description}: {q}: {exc}") from exc
            series = answer.raw.get("series", [])
            if any(s.get("partial") for s in series):
                # the server's max-row-limit cut the answer: ask for half the time, twice
                mid = lo + (hi - lo) // 2 // step * step
                if mid <= lo:
                    raise SourceError(
                        f"{self.description}: the answer to {q} is cut short by the server"
                        " (max-row-limit) even for one period; raise the limit or report fewer"
                        " branches at a time (--branch)"
                    )
                return window(lo, mid) + window(mid, hi)
            return [(dict(s.get("tags") or {}), _points(s)) for s in series]

        lo = start_ns
        while lo < end_ns:
            hi = min(end_ns, lo + _WINDOW_NS)
            yield from window(lo, hi)
            lo = hi

    def _statements(self, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Several InfluxQL statements in one request: each one's series."""
        q = "; ".join(statements)
        try:
            answer = self._client.query(q, epoch="ns")
        except Exception as exc:  # the client raises requests' and its own errors
            raise SourceError(f"{self.description}: {q}: {exc}") from exc
        results = answer if isinstance(answer, list) else [answer]
        out = []
        for result in results:
            series = result.raw.get("series", [])
            if any(s.get("partial") for s in series):
                raise SourceError(f"{self.description}: the answer to {q} is cut short")
            out.append(series)
        return out

    def _branch_filter(self, branches: Sequence[str] | None) -> str:
        if not branches:
            return ""
        ors = " OR ".join(
            f"{_quote_ident(schema.Tag.BRANCH.value)} = {_quote_str(b)}" for b in branches
        )
        return f" AND ({ors})"

    def hour_sums(
        self, spans: Sequence[tuple[int, int]], branches: Sequence[str] | None
    ) -> Iterator[MeterSums]:
        """Each meter's hours and consumption per span (``[start_ns, end_ns)``), in all,
        measured and interpolated, summed by the server (decision 100). One request asks each
        span's sums, and over all spans each meter's hours and its hours not measured; a meter
        with every hour has its spans' hours known; only the meters without, or not all
        measured, are asked again, by span (and quality)."""
        c, q = (_quote_ident(f.key) for f in (schema.HOURLY_CONSUMPTION, schema.HOURLY_QUALITY))
        measured, interpolated = (_quote_str(x) for x in schema.HOURLY_QUALITY.choices[:2])
        if not spans:
            return
        whole = [(spans[0][0], spans[-1][1])]

        def ask(
            what: str, where: str, chosen: Sequence[str] | None, over: Sequence[tuple[int, int]]
        ) -> list[str]:
            return [
                f"SELECT {what} FROM {_quote_ident(schema.ENERGY_HOURLY.name)}"  # noqa: S608
                f" WHERE time >= {lo} AND time < {hi}{self._branch_filter(chosen)}{where}"
                f" GROUP BY {_BY_METER}"
                for lo, hi in over
            ]

        sums, counts = f'sum({c}) AS "s"', f'count({c}) AS "n"'
        answers = self._statements(
            ask(sums, "", branches, spans)  # a sum or a count costs a pass each: one of each
            + ask(counts, "", branches, whole)
            + ask(f'count({q}) AS "n"', f" AND {q} != {measured}", branches, whole)
        )
        totals = [_by_meter(x) for x in answers[: len(spans)]]
        hours_of, others = _by_meter(answers[-2]), _by_meter(answers[-1])
        full = sum(hours_between_ns(lo, hi) for lo, hi in spans)
        partial = sorted({k[0] for k, (_, n) in hours_of.items() if n != full})
        mixed = sorted({k[0] for k in others})  # branches with a meter not all measured
        none: list[dict[tuple[str, str, str], tuple[Decimal, int]]] = [{} for _ in spans]
        by_n, by_m, by_i = none, none, none
        if partial:
            by_n = [_by_meter(x) for x in self._statements(ask(counts, "", partial, spans))]
        if mixed:
            both = f"{sums}, {counts}"
            answers = self._statements(
                ask(both, f" AND {q} = {measured}", mixed, spans)
                + ask(both, f" AND {q} = {interpolated}", mixed, spans)
            )
            by_m = [_by_meter(x) for x in answers[: len(spans)]]
            by_i = [_by_meter(x) for x in answers[len(spans) :]]
        zero = (Decimal(0), 0)
        for i, ((lo, hi), span_totals) in enumerate(zip(spans, totals, strict=True)):
            for key, (total, _) in span_totals.items():
                whole_meter = hours_of.get(key, zero)[1] == full
                hours = hours_between_ns(lo, hi) if whole_meter else by_n[i].get(key, zero)[1]
                m, mh = by_m[i].get(key, zero) if key in others else (total, hours)
                n, nh = by_i[i].get(key, zero)
                yield MeterSums(*key, i, hours, total, mh, m, nh, n)

    def hour_runs(
        self,
        start_ns: int,
        end_ns: int,
        branches: Sequence[str] | None,
        present: Mapping[tuple[str, str, str], tuple[int, int]],
    ) -> Iterator[MeterRuns]:
        """Each meter's first and last hour in [start_ns, end_ns), the gaps between its
        present hours and the interpolated hours directly after another. ``present``: each
        meter's hours and interpolated hours in the span; a meter with every hour needs no
        query; one without has its first and last hour asked, and its steps counted by the
        server (InfluxQL's ``elapsed`` between consecutive hours) when it has fewer hours than
        its first to last, or interpolated hours."""
        c, q = (_quote_ident(f.key) for f in (schema.HOURLY_CONSUMPTION, schema.HOURLY_QUALITY))
        span = f"time >= {start_ns} AND time < {end_ns}"
        src = f"{_quote_ident(schema.ENERGY_HOURLY.name)} WHERE {span}"
        full = (end_ns - start_ns) // HOUR_NS  # a meter with every hour has no runs to find
        first_of = {k: start_ns for k, (h, _) in present.items() if h == full}
        last_of = dict.fromkeys(first_of, end_ns - HOUR_NS)
        partial = sorted({k[0] for k in present if k not in first_of})
        if partial:
            where = self._branch_filter(partial)
            firsts, lasts = self._statements(
                [  # a selector alone gives its point's own time
                    f'SELECT first({c}) AS "first" FROM {src}{where} GROUP BY {_BY_METER}',  # noqa: S608
                    f'SELECT last({c}) AS "last" FROM {src}{where} GROUP BY {_BY_METER}',  # noqa: S608
                ]
            )
            first_of |= {_meter(s): int(s["values"][0][0]) for s in firsts}
            last_of |= {_meter(s): int(s["values"][0][0]) for s in lasts}
        gappy = sorted(
            {
                k[0]
                for k, first in first_of.items()
                if present.get(k, (0, 0))[0] < (last_of[k] - first) // HOUR_NS + 1
            }
        )
        blended = sorted({k[0] for k, (_, n) in present.items() if n})

        def steps(chosen: Sequence[str], extra: str, test: str) -> str:
            inner = (
                f'SELECT elapsed({c}, 1h) AS "e" FROM {src}{self._branch_filter(chosen)}{extra}'  # noqa: S608
                f" GROUP BY {_BY_METER}"
            )
            outer = f'SELECT count("e") AS "n" FROM ({inner}) WHERE {span} AND "e" {test}'  # noqa: S608
            return f"{outer} GROUP BY {_BY_METER}"

        asked = [steps(gappy, "", "> 1")] if gappy else []
        if blended:
            asked.append(
                steps(blended, f" AND {q} = {_quote_str(schema.HOURLY_QUALITY.choices[1])}", "= 1")
            )
        answers = self._statements(asked) if asked else []
        gap_n = {k: n for k, (_, n) in _by_meter(answers[0]).items()} if gappy else {}
        cont_n = {k: n for k, (_, n) in _by_meter(answers[-1]).items()} if blended else {}
        for key, first in first_of.items():
            yield MeterRuns(*key, first, last_of[key], gap_n.get(key, 0), cont_n.get(key, 0))

    def hours(
        self, start_ns: int, end_ns: int, branches: Sequence[str] | None
    ) -> Iterator[HourRow]:
        fields = (schema.HOURLY_CONSUMPTION, schema.HOURLY_QUALITY, schema.HOURLY_COVERAGE)
        tags = (schema.Tag.BRANCH, schema.Tag.DEVICE, schema.Tag.CARRIER)
        c, q, v = (f.key for f in fields)
        for key, points in self._series(
            measurement=schema.ENERGY_HOURLY,
            fields=fields,
            group=tags,
            start_ns=start_ns,
            end_ns=end_ns,
            branches=branches,
        ):
            branch, device = key.get(_BRANCH, ""), key.get(_DEVICE, "")
            carrier = key.get(_CARRIER, "")
            for p in points:
                if p.get(c) is None:
                    continue
                yield HourRow(
                    branch=branch,
                    device=device,
                    carrier=carrier,
                    hour_ns=int(p["time"]),
                    consumption=_decimal(p[c]),
                    quality=str(p.get(q) or ""),
                    coverage=_decimal(p[v]) if p.get(v) is not None else Decimal(0),
                )

    def register_days(
        self, start_ns: int, end_ns: int, branches: Sequence[str] | None
    ) -> Iterator[RegisterDay]:
        reg = _quote_ident(schema.ENERGY_REGISTER.key)
        select = ", ".join(
            f"{fn}({reg}) AS {_quote_ident(fn)}" for fn in ("first", "min", "max", "last")
        )
        tags = (schema.Tag.BRANCH, schema.Tag.DEVICE, schema.Tag.CARRIER)
        for key, points in self._series(
            measurement=schema.ENERGY,
            fields=(),
            group=tags,
            start_ns=start_ns,
            end_ns=end_ns,
            branches=branches,
            select=select,
            every="1d",
        ):
            branch, device = key.get(_BRANCH, ""), key.get(_DEVICE, "")
            carrier = key.get(_CARRIER, "")
            for p in points:
                if p.get("first") is None:
                    continue
                yield RegisterDay(
                    branch=branch,
                    device=device,
                    carrier=carrier,
                    day_ns=int(p["time"]),
                    first=_decimal(p["first"]),
                    low=_decimal(p["min"]),
                    high=_decimal(p["max"]),
                    last=_decimal(p["last"]),
                )

    def entered(
        self, start_ns: int, end_ns: int, branches: Sequence[str] | None
    ) -> Iterator[Counter]:
        key = _quote_ident(schema.OCCUPANCY_ENTERED.key)
        for tags, points in self._series(
            measurement=schema.OCCUPANCY,
            fields=(),
            group=(schema.Tag.BRANCH, schema.Tag.DEVICE),
            start_ns=start_ns - start_ns % HOUR_NS,
            end_ns=end_ns,
            branches=branches,
            select=f'last({key}) AS "last"',
            every="1h",
        ):
            branch, device = tags.get(_BRANCH, ""), tags.get(_DEVICE, "")
            for p in points:
                if p.get("last") is not None:
                    yield Counter(branch, device, "", int(p["time"]), _decimal(p["last"]))

    def points(
        self,
        measurement: schema.Measurement,
        start_ns: int,
        end_ns: int,
        branches: Sequence[str] | None,
    ) -> Iterator[Point]:
        """Every point of ``measurement`` in [start_ns, end_ns), per series, in time order."""
        for tags, points in self._series(
            measurement=measurement,
            fields=tuple(measurement),
            group=measurement.tags,
            start_ns=start_ns,
            end_ns=end_ns,
            branches=branches,
        ):
            for p in points:
                fields = {
                    f.key: _typed(f, p[f.key]) for f in measurement if p.get(f.key) is not None
                }
                if fields:
                    yield Point(tags, fields, int(p["time"]))


_BY_METER = ", ".join(
    _quote_ident(t.value) for t in (schema.Tag.BRANCH, schema.Tag.DEVICE, schema.Tag.CARRIER)
)


def hours_between_ns(start_ns: int, end_ns: int) -> int:
    return (end_ns - start_ns) // HOUR_NS


def _meter(series: dict[str, Any]) -> tuple[str, str, str]:
    tags = series.get("tags") or {}
    return tags.get(_BRANCH, ""), tags.get(_DEVICE, ""), tags.get(_CARRIER, "")


def _by_meter(series: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[Decimal, int]]:
    """Per meter: its sum (``s``, when asked) and count, from a ``GROUP BY`` answer."""
    out = {}
    for one in series:
        row = dict(zip(one["columns"], one["values"][0], strict=True))
        total = _decimal(row["s"]) if row.get("s") is not None else Decimal(0)
        out[_meter(one)] = (total, int(row.get("n") or 0))
    return out


def _typed(field: schema.Field, value: object) -> str | Decimal | bool:
    if field.type is schema.FieldType.STRING:
        return str(value)
    if field.type is schema.FieldType.BOOL:
        return bool(value)
    return _decimal(value)


# -- the local store -------------------------------------------------------------------------

_SPLIT_SPACE = re.compile(r"(?<!\\) ")
_UNESCAPE = re.compile(r"\\(.)")


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def parse_fields(text: str) -> dict[str, str | Decimal | bool]:
    """The field set of a line protocol line: strings unquoted, numbers as Decimal."""
    fields: dict[str, str | Decimal | bool] = {}
    i, n = 0, len(text)
    while i < n:
        eq = i
        while eq < n and not (text[eq] == "=" and text[eq - 1] != "\\"):
            eq += 1
        key = _UNESCAPE.sub(r"\1", text[i:eq])
        j = eq + 1
        if j < n and text[j] == '"':
            j += 1
            buf = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            fields[key] = "".join(buf)
            j += 1  # the closing quote
        else:
            end = text.find(",", j)
            end = n if end < 0 else end
            raw = text[j:end]
            if raw in ("t", "T", "true", "True", "TRUE"):
                fields[key] = True
            elif raw in ("f", "F", "false", "False", "FALSE"):
                fields[key] = False
            else:
                fields[key] = Decimal(raw.rstrip("iu"))
            j = end
        i = j + 1  # past the comma
    return fields


_TAGS_CACHE: dict[str, dict[str, str]] = {}


def _tags(head: str) -> dict[str, str]:
    """The tags of a series key (cached: a store holds few series and many lines)."""
    found = _TAGS_CACHE.get(head)
    if found is None:
        found = {}
        for part in _split_unescaped(head, ",")[1:]:
            k, _, v = part.partition("=")
            found[_UNESCAPE.sub(r"\1", k)] = _UNESCAPE.sub(r"\1", v)
        if len(_TAGS_CACHE) > 10_000:
            _TAGS_CACHE.clear()
        _TAGS_CACHE[head] = found
    return found


def _fast_fields(text: str) -> dict[str, str | Decimal | bool] | None:
    """Fields of a line without escapes or quoted commas; None: use ``parse_fields``."""
    fields: dict[str, str | Decimal | bool] = {}
    for part in text.split(","):
        key, eq, raw = part.partition("=")
        if not eq:
            return None
        if raw.startswith('"'):
            if len(raw) < 2 or not raw.endswith('"'):
                return None
            fields[key] = raw[1:-1]
        elif raw in ("t", "T", "true", "True", "TRUE"):
            fields[key] = True
        elif raw in ("f", "F", "false", "False", "FALSE"):
            fields[key] = False
        else:
            fields[key] = Decimal(raw.rstrip("iu"))
    return fields


def _parse(line: str) -> tuple[dict[str, str], dict[str, str | Decimal | bool], int]:
    """Tags, fields and time of one line of line protocol (with its timestamp)."""
    if "\\" not in line and line.count(" ") == 2:
        head, fields_text, stamp = line.split(" ")
        fields = _fast_fields(fields_text)
        if fields is not None:
            return _tags(head), fields, int(stamp)
    head, _, rest = line.partition(" ") if "\\ " not in line else _head_split(line)
    fields_text, _, stamp = rest.rstrip().rpartition(" ")
    return _tags(head), parse_fields(fields_text), int(stamp)


def _head_split(line: str) -> tuple[str, str, str]:
    head, rest = _SPLIT_SPACE.split(line, maxsplit=1)
    return head, " ", rest


class StoreSource:
    """One gateway's local store (the outbox SQLite file): the history it still holds."""

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        if not path.is_file():
            raise SourceError(f"{path}: no such local store")
        self.description = f"local store {path}"
        self._outbox = Outbox(path, read_only=True)  # a live gateway's file: read, never write

    def close(self) -> None:
        self._outbox.close()

    def __enter__(self) -> StoreSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lines(
        self,
        measurement: schema.Measurement,
        start_ns: int,
        end_ns: int,
        branches: Sequence[str] | None,
    ) -> Iterable[tuple[dict[str, str], dict[str, str | Decimal | bool], int]]:
        wanted = set(branches) if branches else None
        # A week at a time: ``Outbox.lines`` pages by (time, seq) from the start of its range,
        # and a page far into a long range costs more than one near its start.
        lo = start_ns
        while lo < end_ns:
            hi = min(end_ns, lo + _STORE_WINDOW_NS)
            for entry in self._outbox.lines(measurement=measurement.name, start_ns=lo, end_ns=hi):
                tags, fields, time_ns = _parse(entry.line)
                if wanted is None or tags.get(_BRANCH) in wanted:
                    yield tags, fields, time_ns
            lo = hi

    def hours(
        self, start_ns: int, end_ns: int, branches: Sequence[str] | None
    ) -> Iterator[HourRow]:
        c, q, v = (
            schema.HOURLY_CONSUMPTION.key,
            schema.HOURLY_QUALITY.key,
            schema.HOURLY_COVERAGE.key,
        )
        for tags, fields, time_ns in self._lines(schema.ENERGY_HOURLY, start_ns, end_ns, branches):
            consumption = fields.get(c)
            if not isinstance(consumption, Decimal):
                continue
            coverage = fields.get(v)
            yield HourRow(
                branch=tags.get(_BRANCH, ""),
                device=tags.get(_DEVICE, ""),
                carrier=tags.get(_CARRIER, ""),
                hour_ns=time_ns,
                consumption=consumption,
                quality=str(fields.get(q, "")),
                coverage=coverage if isinstance(coverage, Decimal) else Decimal(0),
            )

    def points(
        self,
        measurement: schema.Measurement,
        start_ns: int,
        end_ns: int,
        branches: Sequence[str] | None,
    ) -> Iterator[Point]:
        """Every point of ``measurement`` in [start_ns, end_ns), in time order."""
        for tags, fields, time_ns in self._lines(measurement, start_ns, end_ns, branches):
            yield Point(tags, fields, time_ns)

    def _counters(
        self,
        measurement: schema.Measurement,
        field: schema.Field,
        start_ns: int,
        end_ns: int,
        branches: Sequence[str] | None,
    ) -> Iterator[Counter]:
        for tags, fields, time_ns in self._lines(measurement, start_ns, end_ns, branches):
            value = fields.get(field.key)
            if isinstance(value, Decimal):
                yield Counter(
                    branch=tags.get(_BRANCH, ""),
                    device=tags.get(_DEVICE, ""),
                    carrier=tags.get(_CARRIER, ""),
                    time_ns=time_ns,
                    value=value,
                )

    def register_days(
        self, start_ns: int, end_ns: int, branches: Sequence[str] | None
    ) -> Iterator[RegisterDay]:
        days: dict[tuple[str, str, str, int], list[Decimal]] = {}
        for r in self._counters(schema.ENERGY, schema.ENERGY_REGISTER, start_ns, end_ns, branches):
            key = (r.branch, r.device, r.carrier, r.time_ns - r.time_ns % DAY_NS)
            got = days.get(key)
            if got is None:
                days[key] = [r.value, r.value, r.value, r.value]
            else:
                got[1] = min(got[1], r.value)
                got[2] = max(got[2], r.value)
                got[3] = r.value
        for (branch, device, carrier, day), (first, low, high, last) in sorted(days.items()):
            yield RegisterDay(branch, device, carrier, day, first, low, high, last)

    def entered(
        self, start_ns: int, end_ns: int, branches: Sequence[str] | None
    ) -> Iterator[Counter]:
        last: dict[tuple[str, str, int], Decimal] = {}
        for r in self._counters(
            schema.OCCUPANCY,
            schema.OCCUPANCY_ENTERED,
            start_ns - start_ns % HOUR_NS,
            end_ns,
            branches,
        ):
            last[(r.branch, r.device, r.time_ns - r.time_ns % HOUR_NS)] = r.value
        for (branch, device, hour_ns), value in sorted(last.items()):
            yield Counter(branch, device, "", hour_ns, value)
