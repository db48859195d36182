"""The outbox's memory: its SQLite page cache is bounded at ``CACHE_KIB``, whatever the store's
size (decision 110). Measured with SQLite's own count of what it has allocated
(``sqlite3_memory_used``, public C API), read from the library Python's sqlite3 module uses."""

from __future__ import annotations

import ctypes
import ctypes.util
import sqlite3
import subprocess
import sys
from pathlib import Path

from openbranch.edge.telemetry.outbox import CACHE_KIB, Outbox, Row

ROOT = Path(__file__).resolve().parents[3]

LINE_BYTES = 200


def _sqlite_library() -> ctypes.CDLL:
    """The SQLite library of Python's sqlite3 module (a shared one, as on Debian)."""
    name = ctypes.util.find_library("sqlite3")
    assert name is not None, "Python's sqlite3 module is not linked to a shared SQLite library"
    library = ctypes.CDLL(name)
    library.sqlite3_libversion.restype = ctypes.c_char_p
    assert library.sqlite3_libversion().decode() == sqlite3.sqlite_version, (
        "the shared SQLite library is not the one Python's sqlite3 module uses"
    )
    library.sqlite3_memory_used.restype = ctypes.c_int64
    return library


def rows(n: int, *, start: int = 0) -> list[Row]:
    time_ns = 1_795_521_600_000_000_000
    return [
        (
            time_ns + i,
            "energy",
            f"meter-{i % 7}",
            0,
            f"energy,branch=b,device=meter-{i % 7} kwh={'9' * (LINE_BYTES - 60)} {time_ns + i}",
        )
        for i in range(start, start + n)
    ]


def _measure(path: Path) -> tuple[int, int]:
    """In this process: SQLite's allocated bytes held by an outbox many times its cache, after
    writing and reading it through; and what is left of them once it is closed."""
    sqlite = _sqlite_library()
    before = sqlite.sqlite3_memory_used()
    with Outbox(path, sinks=["influx"]) as box:
        size = 16 * CACHE_KIB * 1024  # pages written and read: 16 caches' worth
        batches = size // LINE_BYTES // 1000
        for start in range(0, batches * 1000, 1000):
            box.append_rows(rows(1000, start=start))
        assert box.stats().live_bytes > size  # the store is many times the cache
        assert sum(1 for _ in box.lines()) == batches * 1000
        while pending := box.pending("influx", 5000):  # the drainer's reads
            box.ack("influx", pending[-1].seq)
        used = sqlite.sqlite3_memory_used() - before
    return used, sqlite.sqlite3_memory_used() - before


def test_a_store_many_times_the_cache_costs_the_cache_once_read_through(tmp_path: Path) -> None:
    """Measured in a fresh process: SQLite's count is the whole process's, and in the suite
    other tests' connections are freed while this one runs."""
    script = (
        "import sys; from pathlib import Path; "
        "from tests.edge.telemetry.test_outbox_memory import _measure; "
        "print(*_measure(Path(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "outbox.db")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    used, left = (int(n) for n in done.stdout.split())
    # the cache (pages plus SQLite's ~10 % per-page header), with 256 KiB for the schema and
    # the prepared statements; SQLite's default cache would be ~2.2 MB here
    assert CACHE_KIB * 1024 < used < CACHE_KIB * 1024 * 1.15 + 256 * 1024, used
    assert left < 64 * 1024  # closing frees it
