"""MQTT payloads: one row per kind of bad payload, and the good payloads of every profile."""

from __future__ import annotations

import time
from typing import Any

import pytest

from openbranch.integrations.mqtt.payload import Extracted, Extractor, PayloadError, extract, parse
from openbranch.integrations.mqtt.profile import CATALOGUE, MqttProfile

COUNTER = CATALOGUE.get("xovis-pc-line-count")
CONTACT = CATALOGUE.get("aqara-door-contact")
LOCK = CATALOGUE.get("danalock-v3-zigbee")
AXIS = CATALOGUE.get("axis-object-analytics-crossline")


def decode(
    profile: MqttProfile,
    payload: bytes,
    *,
    topic: str | None = None,
    max_bytes: int = 65536,
    max_depth: int = 32,
) -> Extracted:
    """What the device does with one message: parse it whole, then extract each point."""
    doc = parse(payload, max_bytes=max_bytes, max_depth=max_depth)
    return Extractor(profile.points_on(topic)).extract(doc)


def refusals(profile: MqttProfile, payload: bytes, **limits: Any) -> list[str]:
    """Every reason a message gives: the whole message's, or one per refused point."""
    try:
        return list(decode(profile, payload, **limits).problems.values())
    except PayloadError as exc:
        return [str(exc)]


DEEP = 100_000

# One row per kind of bad payload: (profile, payload, limits, the reasons it must give).
BAD: list[Any] = [
    pytest.param(COUNTER, b"\xff\xfe{}", {}, ["invalid UTF-8: byte 0"], id="invalid-utf8"),
    pytest.param(
        COUNTER, b'{"lines": [{"fw": "\xc3\x28"}]}', {}, ["invalid UTF-8: byte 19"], id="bad-utf8"
    ),
    pytest.param(COUNTER, b'{"lines": [', {}, ["invalid JSON: Expecting value at 11"], id="json"),
    pytest.param(COUNTER, b"", {}, ["invalid JSON: Expecting value at 0"], id="empty"),
    pytest.param(
        COUNTER,
        b'{"lines": [{"fw": ' + b"9" * 5000 + b"}]}",
        {},
        ["invalid JSON: Exceeds the limit (4300 digits) for integer string conversion"],
        id="huge-integer-literal",
    ),
    pytest.param(
        COUNTER, b'{"lines": [{"fw": NaN}]}', {}, ["not a number: NaN is not allowed"], id="nan"
    ),
    pytest.param(
        COUNTER,
        b'{"lines": [{"fw": Infinity}]}',
        {},
        ["not a number: Infinity is not allowed"],
        id="infinity",
    ),
    pytest.param(
        COUNTER,
        b'{"lines": [{"fw": -Infinity}]}',
        {},
        ["not a number: -Infinity is not allowed"],
        id="-infinity",
    ),
    pytest.param(COUNTER, b"[1, 2]", {}, ["not an object: top level is list"], id="array"),
    pytest.param(COUNTER, b'"text"', {}, ["not an object: top level is str"], id="string"),
    pytest.param(COUNTER, b"null", {}, ["not an object: top level is NoneType"], id="null"),
    pytest.param(
        COUNTER,
        b'{"a": "' + b"x" * 70_000 + b'"}',
        {},
        ["oversize: 70009 bytes, limit 65536"],
        id="oversize",
    ),
    pytest.param(
        COUNTER,
        b'{"lines": [{"fw": 1, "bw": 2}], "pad": "' + b"x" * 200 + b'"}',
        {"max_bytes": 128},
        ["oversize: 242 bytes, limit 128"],
        id="oversize-configured",
    ),
    pytest.param(
        COUNTER,
        b'{"a":' * 40 + b"1" + b"}" * 40,
        {},
        ["too deep: nested deeper than 32"],
        id="deep-40",
    ),
    pytest.param(
        COUNTER,
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        {"max_bytes": 10 * DEEP},
        ["too deep: nested deeper than 32"],
        id="deep-100000-objects",
    ),
    pytest.param(
        COUNTER,
        b"[" * DEEP + b"]" * DEEP,
        {"max_bytes": 10 * DEEP},
        ["too deep: nested deeper than 32"],
        id="deep-100000-lists",
    ),
    pytest.param(
        COUNTER,
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        {},
        ["oversize: 600001 bytes, limit 65536"],
        id="deep-and-large-is-oversize-first",
    ),
    pytest.param(
        COUNTER,
        b'{"lines": [{"fw": "12", "bw": 3}]}',
        {},
        ["wrong type: lines.0.fw is str '12', not integer"],
        id="wrong-type-string-for-number",
    ),
    pytest.param(
        COUNTER,
        b'{"lines": [{"fw": true, "bw": 3}]}',
        {},
        ["wrong type: lines.0.fw is bool True, not integer"],
        id="bool-as-number",
    ),
    pytest.param(
        COUNTER,
        b'{"lines": [{"fw": 1.5, "bw": 3}]}',
        {},
        ["wrong type: lines.0.fw is float 1.5, not integer"],
        id="float-for-integer",
    ),
    pytest.param(
        COUNTER,
        b'{"lines": [{"fw": 1e400, "bw": 3}]}',
        {},
        ["wrong type: lines.0.fw is float inf, not integer"],
        id="overflowing-float",
    ),
    pytest.param(
        COUNTER,
        b'{"lines": [{"fw": 9223372036854775808, "bw": 3}]}',
        {},
        ["wrong type: lines.0.fw is int 9223372036854775808, not integer"],
        id="beyond-int64",
    ),
    pytest.param(
        COUNTER,
        b'{"lines": [{"bw": 3}]}',
        {},
        ["missing field: lines.0.fw"],
        id="missing-required-field",
    ),
    pytest.param(
        COUNTER,
        b'{"lines": "none"}',
        {},
        ["missing field: lines.0.fw", "missing field: lines.0.bw"],
        id="missing-under-a-wrong-parent",
    ),
    pytest.param(
        CONTACT,
        b'{"contact": "ajar"}',
        {},
        ["wrong type: contact is str 'ajar', not boolean"],
        id="wrong-type-for-mapped",
    ),
    pytest.param(
        LOCK, b'{"state": "JAMMED"}', {}, ["not in map: state = 'JAMMED'"], id="not-in-map"
    ),
    pytest.param(
        AXIS,
        b'{"message": {"data": {"totalHuman": 12}}}',
        {"topic": "Device1Scenario1"},
        ["wrong type: message.data.totalHuman is int 12, not a quoted integer"],
        id="quoted-number-sent-bare",
    ),
    pytest.param(
        AXIS,
        b'{"message": {"data": {"totalHuman": "12.5"}}}',
        {"topic": "Device1Scenario1"},
        ["wrong type: message.data.totalHuman is str '12.5', not a quoted integer"],
        id="quoted-not-an-integer",
    ),
    pytest.param(
        COUNTER,
        b'{"lines": [{"fw": -5, "bw": -1000000}]}',
        {},
        [
            "out of range: lines.0.fw = -5, not in 0..100,000,000",
            "out of range: lines.0.bw = -1000000, not in 0..100,000,000",
        ],
        id="negative-counts",
    ),
    pytest.param(
        COUNTER,
        b'{"lines": [{"fw": 0, "bw": 4611686018427387904}]}',
        {},
        ["out of range: lines.0.bw = 4611686018427387904, not in 0..100,000,000"],
        id="a-count-of-2**62",
    ),
    pytest.param(
        AXIS,
        b'{"message": {"data": {"totalHuman": "-3"}}}',
        {"topic": "Device1Scenario1"},
        ["out of range: message.data.totalHuman = -3, not in 0..100,000,000"],
        id="quoted-negative-count",
    ),
]


@pytest.mark.parametrize(("profile", "payload", "limits", "reasons"), BAD)
def test_each_bad_payload_kind_gives_its_reason(
    profile: MqttProfile, payload: bytes, limits: dict[str, Any], reasons: list[str]
) -> None:
    assert refusals(profile, payload, **limits) == reasons


def test_deep_nesting_is_refused_quickly() -> None:
    payload = b"[" * DEEP + b"]" * DEEP
    start = time.perf_counter()
    with pytest.raises(PayloadError, match="too deep"):
        parse(payload, max_bytes=len(payload))
    assert time.perf_counter() - start < 1.0


def test_a_bad_point_is_refused_alone() -> None:
    got = extract({"lines": [{"fw": "12", "bw": 3}]}, COUNTER.points)
    assert got.values == {"exited": 3}
    assert set(got.problems) == {"entered"}


def test_optional_points_may_be_missing() -> None:
    optional = COUNTER.model_copy(
        update={"points": [p.model_copy(update={"required": False}) for p in COUNTER.points]}
    )
    assert decode(optional, b'{"lines": []}') == Extracted({}, {})


def test_ignored_values_give_nothing_and_no_refusal() -> None:
    button = CATALOGUE.get("aqara-help-button")
    for action in (b"release", b""):
        assert decode(button, b'{"action": "' + action + b'"}') == Extracted({}, {})


@pytest.mark.parametrize(
    ("profile", "payload", "values"),
    [
        (COUNTER, b'{"lines": [{"id": 0, "fw": 120, "bw": 98}]}', {"entered": 120, "exited": 98}),
        (CONTACT, b'{"contact": true, "battery": 97}', {"open": False}),
        (CONTACT, b'{"contact": false}', {"open": True}),
        (LOCK, b'{"state": "LOCK", "lock_state": "locked"}', {"locked": True}),
        (LOCK, b'{"state": "UNLOCK"}', {"locked": False}),
        (CATALOGUE.get("aqara-help-button"), b'{"action": "double"}', {"pressed": True}),
    ],
)
def test_good_payloads(profile: MqttProfile, payload: bytes, values: dict[str, Any]) -> None:
    got = decode(profile, payload)
    assert got.problems == {}
    assert {k: v for k, v in got.values.items() if k in values} == values


@pytest.mark.parametrize(
    ("profile_id", "index"),
    [(pid, i) for pid, p in sorted(CATALOGUE.all().items()) for i in range(len(p.examples))],
)
def test_every_profile_example_decodes_to_its_values(profile_id: str, index: int) -> None:
    profile = CATALOGUE.get(profile_id)
    example = profile.examples[index]
    got = decode(profile, example.payload.encode(), topic=example.topic)
    assert got.problems == {}
    assert dict(got.values) == example.values
    assert [type(v) for v in got.values.values()] == [type(v) for v in example.values.values()]
