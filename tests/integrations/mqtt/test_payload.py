"""MQTT payloads: one row per kind of bad payload, and good payloads of every shipped profile."""

from __future__ import annotations

from typing import Any

import pytest

from integrations.mqtt.payload import PayloadError, extract, parse
from integrations.mqtt.profile import CATALOGUE

COUNTER = CATALOGUE.get("xovis-pc-line-count")
CONTACT = CATALOGUE.get("aqara-door-contact")


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        pytest.param(b"\xff\xfe{}", "invalid UTF-8", id="utf8"),
        pytest.param(b'{"a": 1', "invalid JSON", id="json"),
        pytest.param(b'{"lines": [{"fw": NaN}]}', "not a number", id="nan"),
        pytest.param(b'{"lines": [{"fw": Infinity}]}', "not a number", id="inf"),
        pytest.param(b'{"lines": [{"fw": -Infinity}]}', "not a number", id="-inf"),
        pytest.param(b"[1, 2]", "not an object", id="array"),
        pytest.param(b'"text"', "not an object", id="string"),
        pytest.param(
            b"{" + b'"x":' * 0 + b'"a": "' + b"x" * 70_000 + b'"}', "oversize", id="oversize"
        ),
        pytest.param(b'{"a":' * 40 + b"1" + b"}" * 40, "too deep", id="deep-40"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "oversize", id="deep-huge"),
        pytest.param(b"[" * 5000 + b"]" * 5000, "too deep", id="deep-recursion"),
    ],
)
def test_bad_messages_are_refused_with_their_kind(payload: bytes, kind: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse(payload, max_bytes=65536, max_depth=32)
    assert info.value.kind == kind
    assert str(info.value).startswith(kind + ":")


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"lines": [{"fw": "12", "bw": 3}]}, "wrong type: lines.0.fw is str '12', not integer"),
        ({"lines": [{"fw": True, "bw": 3}]}, "wrong type: lines.0.fw is bool True, not integer"),
        ({"lines": [{"fw": 1.5, "bw": 3}]}, "wrong type: lines.0.fw is float 1.5, not integer"),
        ({"lines": [{"bw": 3}]}, "missing field: lines.0.fw"),
    ],
)
def test_a_bad_point_is_refused_alone(doc: dict[str, Any], problem: str) -> None:
    got = extract(doc, COUNTER.points)
    assert got.problems == {"entered": problem}
    assert got.values == ({"exited": 3} if "bw" in str(doc) else {})


def test_every_missing_point_is_named() -> None:
    assert extract({"lines": []}, COUNTER.points).problems == {
        "entered": "missing field: lines.0.fw",
        "exited": "missing field: lines.0.bw",
    }


def test_value_not_in_map() -> None:
    got = extract({"contact": "ajar"}, CONTACT.points)
    assert got.problems == {"open": "wrong type: contact is str 'ajar', not boolean"}
    lock = CATALOGUE.get("danalock-v3-zigbee")
    assert extract({"state": "JAMMED"}, lock.points).problems == {
        "locked": "not in map: state = 'JAMMED'"
    }


@pytest.mark.parametrize(
    ("profile", "payload", "values"),
    [
        (
            "xovis-pc-line-count",
            b'{"lines": [{"id": 0, "fw": 120, "bw": 98}]}',
            {"entered": 120, "exited": 98},
        ),
        ("aqara-door-contact", b'{"contact": true, "battery": 97}', {"open": False}),
        ("aqara-door-contact", b'{"contact": false, "battery": 97}', {"open": True}),
        ("danalock-v3-zigbee", b'{"state": "LOCK", "lock_state": "locked"}', {"locked": True}),
        ("danalock-v3-zigbee", b'{"state": "UNLOCK"}', {"locked": False}),
        ("aqara-help-button", b'{"action": "single", "battery": 100}', {"pressed": True}),
        ("aqara-help-button", b'{"action": "release"}', {}),
    ],
)
def test_good_payloads_of_every_profile(
    profile: str, payload: bytes, values: dict[str, Any]
) -> None:
    prof = CATALOGUE.get(profile)
    got = extract(parse(payload), prof.points)
    assert got.problems == {}
    assert dict(got.values) == values
