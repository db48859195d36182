"""Giving the allocator's free memory back to the system, once a health tick (issue 17).

CPython returns its own small-object arenas when they empty, but memory freed through C's
``malloc`` (larger objects, buffers, SQLite's pages, libraries' allocations) stays with glibc
until the top of its heap is free: a few live blocks keep megabytes of freed pages in the
gateway's RSS, and RSS creeps up though nothing is held. glibc's ``malloc_trim(0)`` hands every
whole free page in every arena back (``madvise``), in about a millisecond for the gateway's
heap. Elsewhere (musl, macOS) there is nothing to call and nothing is done.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

__all__ = ["release_free_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """The process's own symbols (``dlopen(NULL)``): no file to open and no ``ldconfig`` to
    run, which matters when the first call comes with no file descriptor left."""
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)
    return trim


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; True if glibc released any."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
