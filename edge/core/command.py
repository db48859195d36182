"""`Command`: one request to change one device. Commands are data; integrations carry them out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from openbranch.edge.core.reading import Value

__all__ = ["Command", "CommandError"]


class CommandError(ValueError):
    """A command that cannot be carried out (unknown point, out of range, expired)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Set ``point`` of ``device`` to ``value``.

    ``reason`` says why (the mode change, the override), ``who`` says on whose behalf; a
    command past ``expires_at`` is never carried out.
    """

    device: str
    point: str
    value: Value
    reason: str
    who: str
    issued_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        if self.issued_at.tzinfo is None or self.expires_at.tzinfo is None:
            raise CommandError(f"{self.device}.{self.point}: command times must be aware")
        if self.expires_at <= self.issued_at:
            raise CommandError(f"{self.device}.{self.point}: command expires before it is issued")

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at
