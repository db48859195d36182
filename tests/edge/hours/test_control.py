"""Signed control messages: every refusal is audited and moves nothing; a valid override takes
effect and expires on time — against a running gateway and a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.core.schedule import Mode
from openbranch.edge.hours.control import KINDS, ControlError, Verifier, sign
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from tests.services import Mosquitto
from tests.support.waiting import until

KEY = b"k3y-for-tests-only"
NOW = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]


def message(**changes: Any) -> dict[str, Any]:
    base = {
        "id": "m-1",
        "issued_at": NOW.isoformat(),
        "expires_at": (NOW + timedelta(minutes=5)).isoformat(),
        "action": "override",
        "mode": "self_service",
        "until": (NOW + timedelta(hours=2)).isoformat(),
        "who": "ops:anna",
        "reason": "author evening",
    }
    base.update(changes)
    return base


class Store(dict[str, str]):
    def save(self, key: str, value: str) -> None:
        self[key] = value


def verifier(store: Store) -> Verifier:
    return Verifier(key=KEY, load=store.get, save=store.save)


def payload(msg: dict[str, Any], key: bytes = KEY) -> bytes:
    return json.dumps(sign(msg, key)).encode()


BAD = {
    "wrong signature": payload(message(), key=b"another key"),
    "not signed": json.dumps(message()).encode(),
    "expired": payload(message(id="m-2", expires_at=(NOW - timedelta(seconds=1)).isoformat())),
    "issued in the future": payload(
        message(
            id="m-3",
            issued_at=(NOW + timedelta(minutes=10)).isoformat(),
            expires_at=(NOW + timedelta(minutes=15)).isoformat(),
        )
    ),
    "mode:": payload(message(id="m-4", mode="emergency")),
    "until:": payload(message(id="m-5", until=(NOW + timedelta(days=3)).isoformat())),
    "not JSON": b"{nope",
}


@pytest.mark.parametrize(("reason", "raw"), BAD.items(), ids=list(BAD))
def test_refusals_say_why(reason: str, raw: bytes) -> None:
    with pytest.raises(ControlError, match=reason):
        verifier(Store()).check(raw, retained=False, now=NOW)


def test_retained_and_replayed_are_refused_also_after_a_restart() -> None:
    store = Store()
    good = payload(message())
    with pytest.raises(ControlError, match="retained"):
        verifier(store).check(good, retained=True, now=NOW)
    accepted = verifier(store).check(good, retained=False, now=NOW)
    assert accepted.override is not None
    assert accepted.override.mode is Mode.SELF_SERVICE
    with pytest.raises(ControlError, match="replayed"):
        verifier(store).check(good, retained=False, now=NOW + timedelta(seconds=5))  # restarted


def test_cli_signs_what_the_verifier_accepts(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(KEY.decode(), encoding="utf-8")
    config = ROOT / "examples" / "demo" / "gateway.yaml"
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "openbranch.edge.cli",
            "command",
            "override",
            str(config),
            "--mode",
            "closed",
            "--until",
            until,
            "--who",
            "ops:test",
            "--key-file",
            str(key),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    checked = verifier(Store()).check(out.stdout.encode(), retained=False, now=datetime.now(UTC))
    assert checked.override is not None
    assert checked.override.mode is Mode.CLOSED


def test_gateway_applies_valid_overrides_and_audits_every_refusal(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OB_TEST_CONTROL_KEY", KEY.decode())
    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "ctl", "name": "Control test"},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "protocol": "3.1.1"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "hours": {"weekly": {}},  # closed all week: any open mode comes from an override
            "control": {"key": {"env": "OB_TEST_CONTROL_KEY"}},
        }
    )
    start = datetime.now(UTC)
    clock = ScaledClock(start=start, speed=60)  # a minute per second
    outbox = open_outbox(config)
    gateway = Gateway(config=config, registry=default_registry(), clock=clock, outbox=outbox)
    heard: list[tuple[str, str]] = []  # every audit entry, as the journal writes it
    gateway.journal.listeners.append(lambda kind, text: heard.append((kind, text)))

    def refused(reason: str) -> int:
        return sum(kind == "command_rejected" and reason in text for kind, text in heard)

    def accepted() -> int:
        return sum(kind == "command_accepted" for kind, _ in heard)

    def mode() -> Mode | None:
        decision = gateway.engine.last_decision
        return decision.mode if decision else None

    publisher = mqtt.Client(CallbackAPIVersion.VERSION2)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    topic = "openbranch/ctl/control"
    wall = datetime.now(UTC)  # a retained message waiting for the gateway when it subscribes
    stored = payload(
        message(
            id="b4",
            issued_at=wall.isoformat(),
            expires_at=(wall + timedelta(minutes=5)).isoformat(),
        )
    )
    publisher.publish(topic, stored, qos=1, retain=True).wait_for_publish(5)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        await until(lambda: gateway.mqtt is not None, 5, "the gateway's MQTT session")
        assert gateway.mqtt is not None and await gateway.mqtt.wait_subscribed()
        now = clock.now()
        fresh = {
            "issued_at": now.isoformat(),
            "expires_at": (now + timedelta(minutes=5)).isoformat(),
        }
        bad = [
            payload(message(id="b1", **fresh), key=b"wrong"),
            payload(
                message(
                    id="b2",
                    issued_at=(now - timedelta(minutes=20)).isoformat(),
                    expires_at=(now - timedelta(minutes=10)).isoformat(),
                )
            ),
            payload(message(id="b3", mode="emergency", **fresh)),
        ]
        for raw in bad:
            publisher.publish(topic, raw, qos=1).wait_for_publish(5)
        publisher.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)  # clear it
        # Each is a refusal of its own kind, so each is audited at once (edge/runtime/desk.py);
        # the empty message that cleared the retained one comes last.
        kinds = ("retained", "wrong signature", "expired", "mode:", "not JSON")
        await until(lambda: all(refused(k) for k in kinds), 10, f"refusals audited: {kinds}")
        assert [refused(k) for k in kinds] == [1] * len(kinds)
        assert gateway.overrides.active(now) == []
        assert accepted() == 0
        assert mode() is not Mode.SELF_SERVICE
        ends = now + timedelta(minutes=3)
        good = payload(message(id="g1", until=ends.isoformat(), **fresh))
        publisher.publish(topic, good, qos=1).wait_for_publish(5)
        publisher.publish(topic, good, qos=1).wait_for_publish(5)  # a replay
        await until(lambda: refused("replayed") == 1, 10, "the replay refused")
        assert accepted() == 1
        (override,) = gateway.overrides.active(now)  # only the good one, once
        assert (override.mode, override.end) == (Mode.SELF_SERVICE, ends)
        await until(lambda: mode() is Mode.SELF_SERVICE, 10, "the override in force")
        decision = gateway.engine.last_decision
        assert decision is not None and decision.at < ends
        await until(lambda: mode() is Mode.CLOSED, 15, "the override ended (3 branch minutes)")
        decision = gateway.engine.last_decision
        assert decision is not None and decision.at >= ends  # not before its end
        assert gateway.overrides.active(decision.at) == []
        stop.set()
        await task

    asyncio.run(main())
    publisher.loop_stop()
    publisher.disconnect()
    audit = [e.line for e in outbox.lines(measurement="audit")]
    rejected = [line for line in audit if "kind=command_rejected" in line]
    reasons = " ".join(rejected)
    for reason in ("wrong signature", "expired", "mode:", "retained", "replayed", "not JSON"):
        assert reason in reasons, (reason, rejected)
    assert len(rejected) == 6  # one each, none counted twice
    assert sum("kind=command_accepted" in line for line in audit) == 1


# --- malformed payloads and keys (issue 13) ------------------------------------------------


def _nested(depth: int) -> bytes:
    return b'{"sig": "00", "x": ' + b"[" * depth + b"]" * depth + b"}"


MALFORMED = {
    "non-ASCII sig": json.dumps({**message(), "sig": "\u00e9" * 64}).encode(),
    "non-ASCII sig, bytes": json.dumps({**message(), "sig": "\udcff"}).encode(
        "utf-8", "surrogatepass"
    ),
    "deeply nested list": _nested(100_000),
    "deeply nested object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "an integer of 5000 digits": b'{"sig": "00", "n": ' + b"7" * 5000 + b"}",
    "NaN": b'{"sig": "00", "n": NaN}',
    "a list": b"[]",
    "a number": b"12",
    "sig not a string": json.dumps({**message(), "sig": 12}).encode(),
    "empty": b"",
    "NUL": b"\x00",
    "a lone surrogate": b'{"sig": "\\ud800"}',
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=list(MALFORMED))
def test_every_malformed_payload_is_a_control_error_with_a_reason(raw: bytes) -> None:
    with pytest.raises(ControlError) as info:
        verifier(Store()).check(raw, retained=False, now=NOW)
    assert str(info.value)
    assert info.value.kind


SIGNED_BADLY = {
    "until is a list": message(until=[1]),
    "issued_at is an object": message(issued_at={"a": 1}),
    "expires_at in year 9999": message(expires_at="9999-12-31T23:59:59+00:00"),
    "until at the end of time": message(until="9999-12-31T23:59:59-14:00"),
    "who is a deep object": message(who={"a": {"b": {"c": [1, 2, 3]}}}),
    "id is a list": message(id=[1, 2]),
    "action is a list": message(action=["override"]),
    "mode is an object": message(mode={"closed": True}),
}


def outcome(raw: bytes) -> str:
    """ "accepted", or the kind of the ControlError; any other exception escapes."""
    try:
        verifier(Store()).check(raw, retained=False, now=NOW)
    except ControlError as exc:
        return exc.kind
    return "accepted"


@pytest.mark.parametrize("msg", SIGNED_BADLY.values(), ids=list(SIGNED_BADLY))
def test_signed_but_strange_messages_are_control_errors(msg: dict[str, Any]) -> None:
    assert outcome(payload(msg)) in KINDS


@pytest.mark.parametrize("key", [b"", b"   ", b"\n\t "])
def test_a_verifier_refuses_an_empty_key(key: bytes) -> None:
    with pytest.raises(ValueError, match="empty"):
        Verifier(key=key, load=Store().get, save=Store().save)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = ("id", "issued_at", "expires_at", "action", "mode", "until", "who", "reason")


@settings(max_examples=300, deadline=None)
@given(
    changes=st.dictionaries(st.sampled_from(_FIELDS), _JSON | st.datetimes().map(str)),
    signed=st.booleans(),
)
def test_random_fields_signed_or_not_give_a_message_or_a_control_error(
    changes: dict[str, Any], signed: bool
) -> None:
    msg = message(**changes)
    raw = payload(msg) if signed else json.dumps({**msg, "sig": "x"}).encode()
    assert outcome(raw) in (*KINDS, "accepted")
