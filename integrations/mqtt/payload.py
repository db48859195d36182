"""MQTT payloads to point values. Pure; every refusal says why.

A message is refused whole when it is too large, not UTF-8, not JSON, holds NaN or Infinity,
is nested deeper than the limit, or is not a JSON object. A point whose value is missing (when
required), of the wrong type, or not in its map is refused alone; the message's other points
still count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge import schema
from edge.reading import Value
from integrations.mqtt.profile import MqttPoint

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
    except json.JSONDecodeError as exc:
        raise PayloadError("invalid JSON", f"{exc.msg} at {exc.pos}") from None
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


def _json_type_ok(value: Any, json_type: str) -> bool:
    if json_type == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if json_type == "integer":
        return isinstance(value, int)
    if json_type == "number":
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, str)


def _raw_key(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


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
            if not _json_type_ok(raw, rule.json_type):
                problems[rule.point] = (
                    f"wrong type: {rule.path} is {type(raw).__name__} {raw!r}, not {rule.json_type}"
                )
                continue
            if rule.ignore and _raw_key(raw) in rule.ignore:
                continue
            if rule.map is not None:
                mapped = rule.map.get(_raw_key(raw))
                if mapped is None:
                    problems[rule.point] = f"not in map: {rule.path} = {raw!r}"
                    continue
                values[rule.point] = mapped
            elif rule.to_float:
                values[rule.point] = float(raw) * rule.scale
            else:
                values[rule.point] = raw
        return Extracted(values, problems)


def extract(doc: Mapping[str, Any], points: Sequence[MqttPoint]) -> Extracted:
    """``Extractor(points).extract(doc)``, for one-off use."""
    return Extractor(points).extract(doc)
