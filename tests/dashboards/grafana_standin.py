"""A stand-in for the few Grafana transformations the dashboards use (Grafana cannot run
here): InfluxDB answers as rows, ``joinByField``, ``groupBy`` and a binary ``calculateField``;
and for the alert rules' reduce expression (``reduce``). It mirrors what the panels and rules
ask Grafana to do so the tests can check the result; it does not claim to be Grafana."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from statistics import fmean
from typing import Any

Row = dict[str, Any]


def rows_of(answer: Mapping[str, Any]) -> list[Row]:
    """An InfluxQL statement result as rows: the series' tags merged into each row."""
    out = []
    for series in answer.get("series", []):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            row.update(series.get("tags", {}))
            out.append(row)
    return out


def join_by_field(left: Sequence[Row], right: Sequence[Row], field: str, *, mode: str) -> list[Row]:
    """``joinByField``: rows with the same ``field`` value merged; outer keeps every row."""
    merged: dict[Any, Row] = {}
    for row in left:
        merged.setdefault(row[field], {}).update(row)
    keys_right = set()
    for row in right:
        keys_right.add(row[field])
        merged.setdefault(row[field], {}).update(row)
    if mode == "inner":
        keys_left = {row[field] for row in left}
        return [r for k, r in merged.items() if k in keys_left and k in keys_right]
    return list(merged.values())


_AGGREGATE: dict[str, Any] = {
    "sum": sum,
    "count": len,
    "mean": lambda xs: fmean(xs) if xs else None,
}


def filter_by_value(rows: Iterable[Row], options: Mapping[str, Any]) -> list[Row]:
    """``filterByValue`` with ``equal`` filters: rows matching any (or all) are excluded or
    kept, as ``type`` says."""
    assert options["type"] in ("exclude", "include")

    def matches(row: Row) -> bool:
        hits = [
            row.get(f["fieldName"]) == f["config"]["options"]["value"]
            for f in options["filters"]
            if f["config"]["id"] == "equal"
        ]
        return any(hits) if options.get("match", "any") == "any" else all(hits)

    keep = options["type"] == "include"
    return [row for row in rows if matches(row) == keep]


def group_by(rows: Iterable[Row], options: Mapping[str, Any]) -> dict[Any, Row]:
    """``groupBy`` with group-by fields and aggregated fields (nulls skipped); keyed by the
    group-by value, or by the tuple of them when there are several."""
    fields = options["fields"]
    keys = [name for name, spec in fields.items() if spec["operation"] == "groupby"]
    groups: dict[Any, list[Row]] = defaultdict(list)
    for row in rows:
        if all(row.get(k) is not None for k in keys):
            value = tuple(row[k] for k in keys)
            groups[value[0] if len(keys) == 1 else value].append(row)
    out = {}
    for value, members in groups.items():
        result: Row = dict(zip(keys, value if len(keys) > 1 else (value,), strict=True))
        for name, spec in fields.items():
            if spec["operation"] != "aggregate":
                continue
            numbers = [r[name] for r in members if r.get(name) is not None]
            for agg in spec["aggregations"]:
                result[f"{name} ({agg})"] = _AGGREGATE[agg](numbers)
        out[value] = result
    return out


def calculate_binary(rows: Iterable[Row], options: Mapping[str, Any]) -> list[Row]:
    binary = options["binary"]
    assert binary["operator"] == "/"
    out = []
    for row in rows:
        left, right = row.get(binary["left"]), row.get(binary["right"])
        value = left / right if left is not None and right else None
        out.append(dict(row, **{options["alias"]: value}))
    return out


_REDUCERS: dict[str, Any] = {
    "last": lambda xs: xs[-1],
    "max": max,
    "min": min,
    "mean": fmean,
    "sum": sum,
    "count": len,
}


def reduce(values: Sequence[float | None], model: Mapping[str, Any]) -> float | None:
    """A reduce expression's ``model`` (``reducer``, ``settings.mode``) on one series' values,
    oldest first. Only mode ``dropNN`` (nulls and NaN dropped); no value left: None (the
    series has no data)."""
    mode = model.get("settings", {}).get("mode")
    assert mode == "dropNN", f"reduce mode {mode!r}: the stand-in knows dropNN only"
    numbers = [v for v in values if v is not None and not math.isnan(v)]
    if not numbers:
        return None
    return float(_REDUCERS[model["reducer"]](numbers))
