"""Card pseudonyms: keyed, stable on one gateway, unrelated between gateways."""

from __future__ import annotations

import re

import pytest

from openbranch.edge.core.privacy import PSEUDONYM_CHARS, pseudonym

KEY = bytes(range(32))
CARD = "2200000000017"


def test_stable_and_keyed() -> None:
    mine = pseudonym(KEY, CARD)
    assert re.fullmatch(rf"[0-9a-f]{{{PSEUDONYM_CHARS}}}", mine)
    assert pseudonym(KEY, f" {CARD}\n") == mine  # what a reader adds around it does not count
    assert pseudonym(bytes(32), CARD) != mine  # another gateway's key: another pseudonym
    assert pseudonym(KEY, "2200000000025") != mine
    assert CARD not in mine


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        pseudonym(b"short", CARD)
