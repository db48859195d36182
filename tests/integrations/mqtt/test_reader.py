"""A card reader's presentations (integrations/mqtt/reader.py): what counts as one."""

from __future__ import annotations

import pytest

from openbranch.integrations.mqtt.payload import PayloadError
from openbranch.integrations.mqtt.profile import CATALOGUE
from openbranch.integrations.mqtt.reader import presentation_of

_SPEC = CATALOGUE.get("esphome-wiegand-reader").reader
assert _SPEC is not None
SPEC = _SPEC


@pytest.mark.parametrize(
    ("payload", "card", "pin"),
    [
        (b'{"card": "1234567890", "pin": "4321"}', "1234567890", "4321"),
        (b'{"card": 1234567890}', "1234567890", None),  # a Wiegand number, no PIN typed
        (b'{"card": " 0042 ", "pin": null}', "0042", None),
    ],
)
def test_a_presentation(payload: bytes, card: str, pin: str | None) -> None:
    got = presentation_of(SPEC, "front-reader", payload)
    assert (got.reader, got.card, got.pin) == ("front-reader", card, pin)
    assert card not in repr(got)  # never in a log line


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b'{"pin": "1234"}', "missing field"),
        (b'{"card": ""}', "missing field"),
        (b'{"card": true}', "missing field"),
        (b'{"card": "' + b"9" * 65 + b'"}', "missing field"),
        (b'{"card": "12\\n34"}', "missing field"),
        (b'{"card": "1234", "pin": [1]}', "wrong type"),
        (b"card=1234", "invalid JSON"),
        (b"x" * 5000, "oversize"),
    ],
)
def test_not_a_presentation(payload: bytes, kind: str) -> None:
    with pytest.raises(PayloadError) as refused:
        presentation_of(SPEC, "front-reader", payload)
    assert refused.value.kind == kind
    assert "1234" not in str(refused.value)
