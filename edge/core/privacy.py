"""Card numbers as keyed pseudonyms: what the audit, the lockout and the offline allow-list
hold instead of the number (pure; the key's file is ``edge.runtime.allowlist``'s).

A pseudonym is HMAC-SHA256 of the card number with the gateway's own key, which never leaves
the gateway: a card's pseudonym is stable on one gateway (the audit can follow one card, the
allow-list can find it) and unrelated between gateways; without the key a pseudonym cannot be
turned back into the card by trying every number. PINs are never hashed, kept or passed here.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["KEY_BYTES", "PSEUDONYM_CHARS", "pseudonym"]

KEY_BYTES = 32
PSEUDONYM_CHARS = 32  # hex digits: 128 bits, no two cards of a branch ever share one


def pseudonym(key: bytes, card: str) -> str:
    """The card's pseudonym under ``key``; surrounding spaces of the card do not count."""
    if len(key) < 16:
        raise ValueError("a pseudonym key has at least 16 bytes")
    digest = hmac.new(key, b"card:" + card.strip().encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:PSEUDONYM_CHARS]
