"""MQTT payloads to point values. Pure; every refusal says why.

A message is refused whole when it is too large (checked before decoding), not UTF-8, not JSON,
holds NaN or Infinity, is nested deeper than the limit (checked without recursion), or is not a
JSON object: nothing in it can be trusted. A point whose value is missing (when required), of
the wrong type (a boolean is not a number, ``"12"`` is not an integer unless the point is
``quoted``) or not in its map is refused alone, with its reason; the message's other points
still count, since devices such as Zigbee2MQTT send one object holding unrelated values. A
point whose field has a plausible range in the vocabulary (``edge.core.plausible``: a people
counter's running total is 0..100,000,000) is refused alone when its value is outside it.

Reasons start with a short kind (``oversize``, ``invalid UTF-8``, ``invalid JSON``,
``not a number``, ``too deep``, ``not an object``, ``missing field``, ``wrong type``,
``not in map``, ``out of range``) followed by ``:`` and the detail; the gateway counts
refusals per kind.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openbranch.edge.core import schema
from openbranch.edge.core.plausible import value_range
from openbranch.edge.core.reading import Value
from openbranch.integrations.mqtt.profile import MqttPoint

__all__ = ["Extracted", "Extractor", "PayloadError", "extract", "parse"]


class PayloadError(ValueError):
    """A message that cannot become readings; ``reason`` starts with a short kind."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


def _no_constants(name: str) -> Any:
    raise PayloadError("not a number", f"{name} is not allowed")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def parse(payload: bytes, *, max_bytes: int = 65536, max_depth: int = 32) -> dict[str, Any]:
    """The JSON object in ``payload``, or PayloadError."""
    if len(payload) > max_bytes:
        raise PayloadError("oversize", f"{len(payload)} bytes, limit {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("invalid UTF-8", f"byte {exc.start}") from None
    try:
        doc = _DECODER.decode(text)
    except RecursionError:
        raise PayloadError("too deep", f"nested deeper than {max_depth}") from None
    except PayloadError:
        raise
    except json.JSONDecodeError as exc:
        raise PayloadError("invalid JSON", f"{exc.msg} at {exc.pos}") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise PayloadError("invalid JSON", str(exc).split(":", maxsplit=1)[0]) from None
    if not isinstance(doc, dict):
        raise PayloadError("not an object", f"top level is {type(doc).__name__}")
    if payload.count(b"{") + payload.count(b"[") > max_depth and _depth(doc) > max_depth:
        raise PayloadError("too deep", f"nested deeper than {max_depth}")
    return doc


def _depth(doc: Any) -> int:
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return deepest


_MISSING = object()


def _lookup(doc: Any, parts: Sequence[str]) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
            if node is _MISSING:
                return node
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # InfluxDB's integer field


def _json_type_ok(value: Any, json_type: str) -> bool:
    if json_type == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if json_type == "integer":
        return isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX
    if json_type == "number":
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, str)


_INTEGER_TEXT = re.compile(r"-?[0-9]{1,18}")  # fits InfluxDB's int64


def _unquote(value: str, json_type: str) -> int | float | None:
    """The number a quoted point holds ("20960"), or None when it holds none."""
    if json_type == "integer":
        return int(value) if _INTEGER_TEXT.fullmatch(value) else None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _raw_key(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _short(value: Any) -> str:
    """A value for a log line: a device's 60 KiB string is not."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True, slots=True)
class Extracted:
    values: Mapping[str, Value] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Rule:
    point: str
    path: str
    parts: tuple[str, ...]
    json_type: str
    map: Mapping[str, Value] | None
    ignore: frozenset[str]
    to_float: bool
    scale: float
    required: bool
    quoted: bool
    range: tuple[int, int] | None


class Extractor:
    """The readable points of a profile, resolved once, applied to each message."""

    def __init__(self, points: Sequence[MqttPoint]) -> None:
        self._rules = tuple(
            _Rule(
                point=p.id,
                path=p.path,
                parts=tuple(p.path.split(".")),
                json_type=p.json_type,
                map=p.map,
                ignore=frozenset(p.ignore),
                to_float=p.map is None
                and p.schema_field is not None
                and p.schema_field.type is schema.FieldType.FLOAT,
                scale=p.scale,
                required=p.required,
                quoted=p.quoted,
                range=None if p.field is None else value_range(p.measurement, p.field),
            )
            for p in points
            if p.measurement is not None
        )

    def extract(self, doc: Mapping[str, Any]) -> Extracted:
        """Each readable point's value in its schema field's type; problems per point."""
        values: dict[str, Value] = {}
        problems: dict[str, str] = {}
        for rule in self._rules:
            raw = _lookup(doc, rule.parts)
            if raw is _MISSING:
                if rule.required:
                    problems[rule.point] = f"missing field: {rule.path}"
                continue
            if rule.quoted:
                number = _unquote(raw, rule.json_type) if isinstance(raw, str) else None
                if number is None:
                    problems[rule.point] = (
                        f"wrong type: {rule.path} is {type(raw).__name__} {_short(raw)}, "
                        f"not a quoted {rule.json_type}"
                    )
                    continue
                raw = number
            elif not _json_type_ok(raw, rule.json_type):
                problems[rule.point] = (
                    f"wrong type: {rule.path} is {type(raw).__name__} {_short(raw)}, "
                    f"not {rule.json_type}"
                )
                continue
            if rule.ignore and _raw_key(raw) in rule.ignore:
                continue
            value, problem = _convert(rule, raw)
            if problem is not None:
                problems[rule.point] = problem
                continue
            values[rule.point] = value
        return Extracted(values, problems)


def _convert(rule: _Rule, raw: Any) -> tuple[Value, str | None]:
    """A raw value of the right JSON type as its field's value, or the reason it is refused."""
    value: Value
    if rule.map is not None:
        mapped = rule.map.get(_raw_key(raw))
        if mapped is None:
            return raw, f"not in map: {rule.path} = {_short(raw)}"
        value = mapped
    elif rule.to_float:
        value = float(raw) * rule.scale
        if not math.isfinite(value):
            return raw, f"not a number: {rule.path} = {_short(raw)} scaled"
    else:
        value = raw
    if rule.range is not None and not _within(value, rule.range):
        low, high = rule.range
        return raw, f"out of range: {rule.path} = {_short(raw)}, not in {low:,}..{high:,}"
    return value, None


def _within(value: Value, limits: tuple[int, int]) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True  # a range is about numbers
    return limits[0] <= value <= limits[1]


def extract(doc: Mapping[str, Any], points: Sequence[MqttPoint]) -> Extracted:
    """``Extractor(points).extract(doc)``, for one-off use."""
    return Extractor(points).extract(doc)
