"""Chart axes for the report's inline SVG charts."""

from __future__ import annotations

from decimal import Decimal

__all__ = ["nice_max"]


def nice_max(value: Decimal) -> Decimal:
    """A round axis maximum at or above ``value`` (1, 2, 2.5, 5 x 10^n)."""
    if value <= 0:
        return Decimal(1)
    exp = value.adjusted()
    for step in (1, 2, Decimal("2.5"), 5, 10):
        top = Decimal(step) * Decimal(10) ** exp
        if top >= value:
            return top
    return Decimal(10) ** (exp + 1)
