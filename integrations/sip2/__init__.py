"""The library system over SIP2 2.00 (self-service entry asks it whether a card may enter).

Registered as the ``sip2`` library system: the gateway builds ``Sip2LibrarySystem`` from the
config's ``library_system:`` section through the registry, never by importing this package.
"""

from __future__ import annotations

from openbranch.edge.core.config import Sip2Config
from openbranch.edge.core.registry import Registry
from openbranch.integrations.sip2.client import Sip2LibrarySystem, Sip2Unavailable

__all__ = ["Sip2Config", "Sip2LibrarySystem", "Sip2Unavailable", "register"]


def register(registry: Registry) -> None:
    registry.add_library_system("sip2", Sip2LibrarySystem)
