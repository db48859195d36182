"""The C heap's free pages go back to the system at a health tick: measured in a fresh process
(pytest's own heap would blur it), with glibc, which this machine and the gateway's have."""

from __future__ import annotations

from tests.support.fresh import run_python

FREED_BUT_HELD = """
from openbranch.edge.runtime.memory import release_free_memory

def rss_kib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4

blocks = [bytearray(4000) for _ in range(10_000)]  # 40 MB from malloc, below its mmap size
pin = bytearray(4000)  # allocated last: the top of the heap stays in use
del blocks
held = rss_kib()
released = release_free_memory()
print(held, rss_kib(), released)
"""


def test_free_memory_held_by_the_allocator_is_given_back() -> None:
    (line,) = run_python(FREED_BUT_HELD)
    held, after, released = line.split()
    assert released == "True"
    assert int(held) - int(after) > 30_000, line  # of the 40 MB freed, > 30 MB returned
