"""Waiting on a condition that another task or thread makes true, with a deadline that fails
the test naming what it waited for (never a sleep followed by an assertion)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["until", "until_blocking"]

_LOOK = 0.01  # seconds between looks: short beside any deadline a test states


async def until(condition: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    """Return as soon as ``condition()`` holds; fail after ``within`` real seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within:g} s: {what or condition}"
        await asyncio.sleep(_LOOK)


def until_blocking(condition: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    """:func:`until` for a test with no event loop: blocks its thread between looks."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within:g} s: {what or condition}"
        time.sleep(_LOOK)
