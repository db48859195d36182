"""Signed remote control: a person puts the branch in a mode until a time, over MQTT.

A control message is JSON on ``{prefix}/{branch}/control``::

    {"id": "…unique…", "issued_at": "2026-11-25T20:40:00+00:00",
     "expires_at": "2026-11-25T20:45:00+00:00", "action": "override",
     "mode": "self_service", "until": "2026-11-25T22:00:00+00:00",
     "who": "ops:anna", "reason": "author evening", "sig": "<hex HMAC-SHA256>"}

``sig`` is HMAC-SHA256, with the gateway's own key (from provisioning), over the message
without ``sig``, serialised with sorted keys and no spaces. Actions: ``override`` (mode until
a time), ``close_now`` (closed until a time), ``clear_emergency``, ``cancel_overrides``.

A message is refused — and the refusal audited with the reason — when it is retained, not
JSON, unsigned or wrongly signed, seen before (ids are remembered across restarts until they
expire), expired (so a command queued while the gateway was offline is never carried out
late), issued too far in the future, valid for too long, or asks for something out of range.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from openbranch.edge.core.schedule import Mode
from openbranch.edge.hours.calendar import Override

__all__ = ["ControlError", "ControlMessage", "Verifier", "sign"]

MAX_SKEW = timedelta(seconds=60)  # how far in the future issued_at may be
MAX_VALIDITY = timedelta(hours=1)  # expires_at - issued_at
MAX_OVERRIDE = timedelta(hours=24)  # until - now
ACTIONS = ("override", "close_now", "clear_emergency", "cancel_overrides")
OVERRIDE_MODES = (Mode.CLOSED, Mode.STAFFED, Mode.SELF_SERVICE, Mode.MAINTENANCE)


class ControlError(ValueError):
    """A refused control message; the text is the audited reason."""


def _canonical(message: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in message.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(message: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """``message`` with its signature (for `openbranch command` and tests)."""
    signed = dict(message)
    signed["sig"] = hmac.new(key, _canonical(message), hashlib.sha256).hexdigest()
    return signed


@dataclass(frozen=True, slots=True)
class ControlMessage:
    id: str
    action: str
    who: str
    reason: str
    issued_at: datetime
    expires_at: datetime
    override: Override | None


def _time(raw: Mapping[str, Any], key: str) -> datetime:
    try:
        value = datetime.fromisoformat(str(raw[key]))
    except (KeyError, ValueError):
        raise ControlError(f"{key}: missing or not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise ControlError(f"{key}: needs a UTC offset")
    return value


class Verifier:
    """Checks control messages; remembers the ids it accepted or refused after a valid sig."""

    def __init__(
        self,
        *,
        key: bytes,
        load: Callable[[str], str | None],
        save: Callable[[str, str], None],
        state_key: str = "control:seen",
    ) -> None:
        self._key = key
        self._save = save
        self._state_key = state_key
        saved = load(state_key)
        self._seen: dict[str, str] = json.loads(saved) if saved else {}

    def check(self, payload: bytes, *, retained: bool, now: datetime) -> ControlMessage:
        if retained:
            raise ControlError("retained: a control message must be sent, not stored")
        try:
            raw = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ControlError("not JSON") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("sig"), str):
            raise ControlError("not signed")
        expected = hmac.new(self._key, _canonical(raw), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, raw["sig"]):
            raise ControlError("wrong signature")
        message_id = str(raw.get("id", ""))
        if not message_id:
            raise ControlError("id: missing")
        self._forget_expired(now)
        if message_id in self._seen:
            raise ControlError(f"replayed: id {message_id} was seen before")
        issued, expires = _time(raw, "issued_at"), _time(raw, "expires_at")
        self._remember(message_id, expires)
        if issued > now + MAX_SKEW:
            raise ControlError(f"issued in the future ({issued.isoformat()})")
        if expires <= now:
            raise ControlError(f"expired at {expires.isoformat()}")
        if expires - issued > MAX_VALIDITY:
            raise ControlError(f"valid for longer than {MAX_VALIDITY}")
        return self._parse(raw, message_id, issued, expires, now)

    def _parse(
        self,
        raw: Mapping[str, Any],
        message_id: str,
        issued: datetime,
        expires: datetime,
        now: datetime,
    ) -> ControlMessage:
        action = raw.get("action")
        if action not in ACTIONS:
            raise ControlError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
        who, reason = str(raw.get("who", "")), str(raw.get("reason", ""))
        if not who:
            raise ControlError("who: missing")
        override = None
        if action in ("override", "close_now"):
            mode_text = "closed" if action == "close_now" else raw.get("mode")
            if mode_text not in {m.value for m in OVERRIDE_MODES}:
                raise ControlError(
                    f"mode: {mode_text!r} is not one of closed, staffed, self_service, maintenance"
                )
            until = _time(raw, "until")
            if not now < until <= now + MAX_OVERRIDE:
                raise ControlError(f"until: {until.isoformat()} is not within the next 24 hours")
            override = Override(Mode(mode_text), now, until, f"{who}: {reason}")
        return ControlMessage(message_id, str(action), who, reason, issued, expires, override)

    def _remember(self, message_id: str, expires: datetime) -> None:
        self._seen[message_id] = expires.isoformat()
        self._save(self._state_key, json.dumps(self._seen))

    def _forget_expired(self, now: datetime) -> None:
        # an id can be forgotten once its message would be refused as expired anyway
        keep = {k: v for k, v in self._seen.items() if datetime.fromisoformat(v) > now - MAX_SKEW}
        if len(keep) != len(self._seen):
            self._seen = keep
            self._save(self._state_key, json.dumps(self._seen))
