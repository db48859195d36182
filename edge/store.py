"""The local store: every accepted reading, committed to SQLite (WAL) as line protocol.

This is the seam between polling and forwarding: coordinators ``append`` readings here and
nothing else happens to a reading before it is committed. Sinks drain it (next step of the
telemetry path); the demo and ``gateway status`` read it as the branch's local history.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge.reading import Reading

__all__ = ["LocalStore", "StoredLine"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    measurement TEXT NOT NULL,
    device TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS readings_time ON readings (measurement, time_ns);
"""


@dataclass(frozen=True, slots=True)
class StoredLine:
    seq: int
    time_ns: int
    measurement: str
    device: str
    line: str


class LocalStore:
    """A SQLite database in WAL mode. Thread-safe; one writer at a time."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def append(self, readings: Sequence[Reading]) -> None:
        """Commit ``readings`` in one transaction (one fsync per batch, not per reading)."""
        rows = [(r.time_ns, r.measurement.name, r.device, r.to_line()) for r in readings]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO readings (time_ns, measurement, device, line) VALUES (?,?,?,?)",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM readings").fetchone()
        return int(n)

    def lines(
        self,
        *,
        measurement: str | None = None,
        device: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Iterator[StoredLine]:
        """Stored lines in time order, filtered; the end is exclusive."""
        where, args = [], []
        for clause, value in (
            ("measurement = ?", measurement),
            ("device = ?", device),
            ("time_ns >= ?", start_ns),
            ("time_ns < ?", end_ns),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = "SELECT seq, time_ns, measurement, device, line FROM readings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_ns, seq"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return (StoredLine(*row) for row in rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
