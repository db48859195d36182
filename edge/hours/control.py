"""Signed remote control: a person puts the branch in a mode until a time, over MQTT.

A control message is JSON on ``{prefix}/{branch}/control``::

    {"id": "…unique…", "issued_at": "2026-11-25T20:40:00+00:00",
     "expires_at": "2026-11-25T20:45:00+00:00", "action": "override",
     "mode": "self_service", "until": "2026-11-25T22:00:00+00:00",
     "who": "ops:anna", "reason": "author evening", "sig": "<hex HMAC-SHA256>"}

``sig`` is HMAC-SHA256, with the gateway's own key (from provisioning), over the message
without ``sig``, serialised with sorted keys and no spaces. Actions: ``override`` (mode until
a time), ``close_now`` (closed until a time), ``clear_emergency``, ``cancel_overrides``.

A message is refused — a ``ControlError`` with a reason, whatever the payload holds — when it
is retained, not JSON (bytes that are not UTF-8, nesting deeper than ``MAX_DEPTH``, an integer
Python will not read, NaN), unsigned or wrongly signed (a ``sig`` that is not hex text of the
right length included), seen before (ids are remembered across restarts until they expire),
expired (so a command queued while the gateway was offline is never carried out late), issued
too far in the future, valid for too long, or asks for something out of range. Each refusal has
a ``kind`` from a fixed list (``KINDS``), which the control desk counts refusals by. A key that
is empty or only white space is refused by ``Verifier`` itself (ValueError): with it, anyone
could sign.

Exceptions::

    ValueError
    └── ControlError   a refused control message; ``kind`` and the reason
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
MAX_BYTES = 16_384  # a control message is a few hundred bytes
MAX_DEPTH = 8  # a control message is one flat object

#: Every kind of refusal, a closed list: what the desk counts refusals by.
KINDS = (
    "retained",
    "too large",
    "not JSON",
    "not signed",
    "wrong signature",
    "id",
    "replayed",
    "issued_at",
    "expires_at",
    "issued in the future",
    "expired",
    "valid too long",
    "action",
    "who",
    "reason",
    "mode",
    "until",
)


class ControlError(ValueError):
    """A refused control message: ``kind`` is one of ``KINDS``, the text the audited reason."""

    def __init__(self, kind: str, reason: str | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown refusal kind {kind!r}")
        self.kind = kind
        super().__init__(reason or kind)


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
    text = raw.get(key)
    try:
        if not isinstance(text, str):
            raise ValueError
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ControlError(key, f"{key}: missing or not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise ControlError(key, f"{key}: needs a UTC offset")
    return value


def _text(raw: Mapping[str, Any], key: str) -> str:
    """A field that must be text (a number is taken as its text); anything else is refused."""
    value = raw.get(key, "")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ControlError(key, f"{key}: not text")
    return str(value)


def _decode(payload: bytes) -> dict[str, Any]:
    """The JSON object of a control message, or ControlError; never any other exception."""
    if len(payload) > MAX_BYTES:
        raise ControlError("too large", f"too large: {len(payload)} bytes, limit {MAX_BYTES}")
    if payload.count(b"[") + payload.count(b"{") > MAX_DEPTH * 4 and _nesting(payload) > MAX_DEPTH:
        raise ControlError("not JSON", f"not JSON: nested deeper than {MAX_DEPTH}")
    try:
        raw = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise ControlError("not JSON") from None
    if not isinstance(raw, dict):
        raise ControlError("not JSON", "not JSON: not an object")
    return raw


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _nesting(payload: bytes) -> int:
    """How deep brackets nest, outside strings (an upper bound is enough: this refuses)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _short(value: object) -> str:
    """A value for a reason: what a sender wrote is cut, never quoted at length."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
        if not key.strip():
            raise ValueError("the control key is empty: anyone could sign with it")
        self._key = key
        self._save = save
        self._state_key = state_key
        saved = load(state_key)
        self._seen: dict[str, str] = json.loads(saved) if saved else {}

    def check(self, payload: bytes, *, retained: bool, now: datetime) -> ControlMessage:
        """The message in ``payload``, or ControlError (and never another exception)."""
        if retained:
            raise ControlError("retained", "retained: a control message must be sent, not stored")
        raw = _decode(payload)
        sig = raw.get("sig")
        if not isinstance(sig, str):
            raise ControlError("not signed")
        expected = hmac.new(self._key, _canonical(raw), hashlib.sha256).hexdigest()
        # compare_digest refuses str with non-ASCII characters (TypeError): compare bytes
        if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "surrogatepass")):
            raise ControlError("wrong signature")
        message_id = _text(raw, "id")
        if not message_id:
            raise ControlError("id", "id: missing")
        self._forget_expired(now)
        if message_id in self._seen:
            raise ControlError("replayed", f"replayed: id {message_id} was seen before")
        issued, expires = _time(raw, "issued_at"), _time(raw, "expires_at")
        self._remember(message_id, expires)
        if issued > now + MAX_SKEW:
            raise ControlError(
                "issued in the future", f"issued in the future ({issued.isoformat()})"
            )
        if expires <= now:
            raise ControlError("expired", f"expired at {expires.isoformat()}")
        if expires - issued > MAX_VALIDITY:
            raise ControlError("valid too long", f"valid for longer than {MAX_VALIDITY}")
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
        if not isinstance(action, str) or action not in ACTIONS:
            raise ControlError(
                "action", f"action: {_short(action)} is not one of {', '.join(ACTIONS)}"
            )
        who = _text(raw, "who")
        reason = _text(raw, "reason") if "reason" in raw else ""
        if not who:
            raise ControlError("who", "who: missing")
        override = None
        if action in ("override", "close_now"):
            mode_text = "closed" if action == "close_now" else raw.get("mode")
            if not isinstance(mode_text, str) or mode_text not in {m.value for m in OVERRIDE_MODES}:
                raise ControlError(
                    "mode",
                    f"mode: {_short(mode_text)} is not one of closed, staffed, self_service, "
                    "maintenance",
                )
            until = _time(raw, "until")
            if not now < until <= now + MAX_OVERRIDE:
                raise ControlError(
                    "until", f"until: {until.isoformat()} is not within the next 24 hours"
                )
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
