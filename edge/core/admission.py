"""Self-service entry: what the library system says about a card, and who may come in.

The contract between the gateway and a library system (``LibrarySystem``, answered with a
``Patron``) lives here so the edge core never imports an integration: the SIP2 client in
``integrations/sip2`` implements it, and the entry flow in ``edge.runtime.entry`` uses it.

Exceptions::

    LibrarySystemUnavailable    the library system did not answer (down, timeout, refused login)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol

__all__ = [
    "LibrarySystem",
    "LibrarySystemUnavailable",
    "Patron",
]


@dataclass(frozen=True, kw_only=True)
class Patron:
    """What the library system says about a card (SIP2 patron information, 64).

    ``pin_ok`` is None when no PIN was checked. ``screen_message`` is for the reader only and
    is never logged.
    """

    valid: bool  # SIP2 BL (valid patron)
    pin_ok: bool | None  # SIP2 CQ (valid patron password); None when no PIN was checked
    birth_date: date | None = None  # SIP2 PB where given
    category: str | None = None  # SIP2 PC (patron type)
    charge_denied: bool = False  # patron status char 0
    card_lost: bool = False  # patron status char 4
    too_many_overdue: bool = False  # patron status char 6
    fee_amount: Decimal | None = None  # BV
    screen_message: str | None = None  # AF, never logged

    def __repr__(self) -> str:
        # the screen message may name the patron: keep it out of any log line
        return (
            f"Patron(valid={self.valid}, pin_ok={self.pin_ok}, category={self.category!r}, "
            f"charge_denied={self.charge_denied}, card_lost={self.card_lost}, "
            f"too_many_overdue={self.too_many_overdue}, fee_amount={self.fee_amount})"
        )


class LibrarySystemUnavailable(Exception):
    """The library system did not answer: connection refused or lost, timeout, login refused."""


class LibrarySystem(Protocol):
    """A library system that says whether a card (and PIN) belongs to a patron in good standing."""

    async def lookup(self, card: str, pin: str | None) -> Patron:
        """The patron behind ``card``; raises ``LibrarySystemUnavailable`` when it cannot say."""
        ...

    async def close(self) -> None: ...
