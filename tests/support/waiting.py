"""Waiting on a condition that another task or thread makes true, with a deadline that fails
the test naming what it waited for (never a sleep followed by an assertion)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["until"]


async def until(condition: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    """Return as soon as ``condition()`` holds; fail after ``within`` real seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within:g} s: {what or condition}"
        await asyncio.sleep(0.01)
