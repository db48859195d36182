"""Stopping asyncio tasks without losing the caller's own cancellation.

The common idiom ::

    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

swallows a cancellation of the *caller* that lands while it waits for the task to finish
cancelling (one turn of the loop): the caller's loop runs on, and whoever cancelled it waits for
ever. The soak found it as a gateway whose stop hung (the engine's loop cancelled inside its
sleep's clean-up). ``cancel_and_wait`` waits with ``asyncio.wait``, which never raises the
tasks' own CancelledError, so only the caller's reaches the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended; a cancellation of the caller while it
    waits propagates. What a task raised other than its cancellation is retrieved (so asyncio
    does not report it as never retrieved) and dropped: the caller is cleaning up."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled():
            with contextlib.suppress(Exception):
                task.exception()
