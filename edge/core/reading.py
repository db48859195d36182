"""`Reading`: one observation of one device, stamped at the edge, and its line protocol.

A reading's time is set by the gateway when it observes the value (UTC, nanoseconds). It is
never left for the server to fill in: a retry of the same reading must overwrite the same point,
not add a second one.

One reading is always one line of line protocol, whatever text it carries. Line protocol has
no escape for a newline in a tag or a field value, so a branch, device or tag value with a
control character is refused (``SchemaError``: the config refuses them first, at their line),
and a string field's control characters and line separators are written as visible escapes
(``\\n``, ``\\x1b``, ``\\u2028``): an audit message quoting a sender's text stays one line.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType

from openbranch.edge.core.schema import Measurement, SchemaError, Tag

__all__ = ["Quality", "Reading", "Value", "to_ns"]

Value = float | int | bool | str


class Quality(StrEnum):
    GOOD = "good"
    SUSPECT = "suspect"  # plausible but flagged (e.g. a small dip of an energy counter)


def to_ns(when: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime (exact, no float rounding)."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()}: readings are stamped in UTC")
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One observation. Fields and tags are checked against the schema on construction."""

    branch: str
    device: str
    measurement: Measurement
    fields: Mapping[str, Value]
    time: datetime
    tags: Mapping[str, str] = field(default_factory=dict)
    quality: Quality = Quality.GOOD
    time_ns: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields, measurement = dict(self.fields), self.measurement
        if not fields:
            raise SchemaError(f"{self.device}: a {measurement.name} reading needs a field")
        known = measurement.fields
        for key, value in fields.items():
            spec = known.get(key)
            if spec is None:
                measurement.field(key)  # raises, naming the known fields
            else:
                spec.check(value)
            if isinstance(value, float) and not math.isfinite(value):
                raise SchemaError(f"{self.device}: field {key!r} is {value}, not a number")
        tags = dict(self.tags)
        _no_controls({"branch": self.branch, "device": self.device, **tags}, self.device)
        if tags:
            allowed = measurement.extra_tags
            for key in tags:
                if key not in allowed:
                    raise SchemaError(
                        f"{self.device}: measurement {measurement.name!r} has no tag {key!r}"
                    )
        if self.time.tzinfo is None:
            raise SchemaError(f"{self.device}: reading time must be timezone-aware")
        object.__setattr__(self, "fields", MappingProxyType(fields))
        object.__setattr__(self, "tags", MappingProxyType(tags))
        object.__setattr__(self, "time_ns", to_ns(self.time))

    def to_line(self) -> str:
        """The reading as one line of InfluxDB line protocol, nanosecond precision."""
        fields = self.fields
        field_part = ",".join([_field_key(k) + _format_value(fields[k]) for k in sorted(fields)])
        return f"{self.series_key()} {field_part} {self.time_ns}"

    def series_key(self) -> str:
        """Measurement and sorted tags, escaped: the series this reading belongs to."""
        ident = (self.measurement.name, self.branch, self.device, *sorted(self.tags.items()))
        key = _SERIES.get(ident)
        if key is None:
            tags = {Tag.BRANCH.value: self.branch, Tag.DEVICE.value: self.device, **self.tags}
            key = _escape_measurement(self.measurement.name) + "".join(
                f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags.items()) if v != ""
            )
            if len(_SERIES) >= 50_000:
                _SERIES.clear()
            _SERIES[ident] = key
        return key


_SERIES: dict[tuple[object, ...], str] = {}
_FIELD_KEYS: dict[str, str] = {}  # field key -> its escaped form and "=" (schema keys only)


def _no_controls(texts: Mapping[str, str], device: str) -> None:
    """SchemaError when a series' text (branch, device, a tag value) has a control character."""
    for name, text in texts.items():
        if (char := _control(text)) is not None:
            raise SchemaError(f"{device!r}: {name} has a control character {char}")


def _control(text: str) -> str | None:
    """The first control character of ``text`` as ``U+000A``, or None (fast for the usual
    printable text)."""
    if text.isprintable():
        return None
    for char in text:
        if unicodedata.category(char) == "Cc":
            return f"U+{ord(char):04X}"
    return None


_NAMED = {"\n": "n", "\r": "r", "\t": "t"}
#: Characters written as a visible escape inside a string field: the controls (C0, DEL, C1)
#: and the Unicode line and paragraph separators.
_STRING_ESCAPES = {
    code: "\\\\" + _NAMED.get(chr(code), f"x{code:02x}" if code < 0x100 else f"u{code:04x}")
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}


def _field_key(key: str) -> str:
    text = _FIELD_KEYS.get(key)
    if text is None:
        text = _FIELD_KEYS[key] = _escape_key(key) + "="
    return text


def _escape_measurement(name: str) -> str:
    return name.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _format_value(value: Value) -> str:
    kind = type(value)  # the exact types first (nearly every value), then their subclasses
    if kind is float:
        return repr(value)
    if kind is int:
        return f"{value}i"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    text = value.replace("\\", "\\\\").replace('"', '\\"')
    if not text.isprintable():
        text = text.translate(_STRING_ESCAPES)
    return '"' + text + '"'
