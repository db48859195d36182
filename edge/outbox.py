"""The outbox: the gateway's memory. Every accepted reading is committed here first.

A SQLite database in WAL mode with ``synchronous=FULL``: a batch is accepted when its
transaction commits (one fsync per batch, not per reading), and a committed batch survives a
killed process and a power cut. Each sink has a cursor; an entry leaves a sink's queue only
when that sink's database answered that it stored it, or when the database refused the line
itself (then it sits in the dead-letter table with the server's message).

Delivered entries stay as the branch's local history until space is needed. The outbox is
bounded on disk: at the bound it first forgets history that every sink has, then drops the
oldest undelivered telemetry — counted, and reported through ``on_drop`` — and never an audit
entry.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge.reading import Reading

__all__ = ["Entry", "Outbox", "OutboxStats"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    measurement TEXT NOT NULL,
    device TEXT NOT NULL,
    audit INTEGER NOT NULL DEFAULT 0,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_history ON entries (measurement, time_ns);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, acked INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    line TEXT NOT NULL,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

Row = tuple[int, str, str, int, str]  # time_ns, measurement, device, audit, line


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    time_ns: int
    measurement: str
    device: str
    audit: bool
    line: str


@dataclass(frozen=True, slots=True)
class OutboxStats:
    entries: int
    live_bytes: int
    max_bytes: int
    dropped: int
    depth: Mapping[str, int] = field(default_factory=dict)
    dead_letters: Mapping[str, int] = field(default_factory=dict)
    oldest_pending_ns: Mapping[str, int | None] = field(default_factory=dict)


DropCallback = Callable[[int, str], None]


class Outbox:
    """Thread-safe: coordinators append on the event loop, sinks drain from worker threads."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int = 1_000_000_000,
        sinks: Sequence[str] = (),
        on_drop: DropCallback | None = None,
        check_every_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        self._check_every = check_every_bytes or max(4096, max_bytes // 50)
        self._since_check = 0
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            for sink in sinks:
                self._db.execute(
                    "INSERT OR IGNORE INTO cursors (sink, acked) VALUES (?, 0)", (sink,)
                )
        self.sinks = tuple(sinks)

    # -- writing -------------------------------------------------------------------------

    def append(
        self,
        readings: Sequence[Reading],
        *,
        audit: bool = False,
        state: Mapping[str, str] | None = None,
    ) -> None:
        """Commit ``readings`` (and ``state`` derived from them) in one transaction."""
        rows = [
            (r.time_ns, r.measurement.name, r.device, int(audit), r.to_line()) for r in readings
        ]
        self.append_rows(rows, state=state)

    def append_rows(self, rows: Sequence[Row], *, state: Mapping[str, str] | None = None) -> None:
        """Commit pre-serialised rows: (time_ns, measurement, device, audit, line)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO entries (time_ns, measurement, device, audit, line)"
                    " VALUES (?,?,?,?,?)",
                    rows,
                )
                if state:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                        state.items(),
                    )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._since_check += sum(len(r[4]) + 48 for r in rows)
            if self._since_check >= self._check_every:
                self._since_check = 0
                self._enforce_bound()

    # -- draining ------------------------------------------------------------------------

    def _cursor(self, sink: str) -> int:
        row = self._db.execute("SELECT acked FROM cursors WHERE sink = ?", (sink,)).fetchone()
        if row is None:
            raise KeyError(f"unknown sink {sink!r} (known: {', '.join(self.sinks)})")
        return int(row[0])

    def pending(self, sink: str, limit: int) -> list[Entry]:
        """Up to ``limit`` entries ``sink`` has not stored yet, oldest first."""
        with self._lock:
            acked = self._cursor(sink)
            rows = self._db.execute(
                "SELECT seq, time_ns, measurement, device, audit, line FROM entries"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (acked, limit),
            ).fetchall()
        return [Entry(s, t, m, d, bool(a), line) for s, t, m, d, a, line in rows]

    def pending_lines(self, sink: str, limit: int) -> tuple[int, list[str]]:
        """The last seq and the lines of up to ``limit`` pending entries (the fast path)."""
        with self._lock:
            acked = self._cursor(sink)
            rows = self._db.execute(
                "SELECT seq, line FROM entries WHERE seq > ? ORDER BY seq LIMIT ?",
                (acked, limit),
            ).fetchall()
        if not rows:
            return acked, []
        return int(rows[-1][0]), [line for _, line in rows]

    def ack(self, sink: str, through_seq: int) -> None:
        """``sink``'s database stored (or dead-lettered) every entry up to ``through_seq``."""
        with self._lock:
            self._db.execute(
                "UPDATE cursors SET acked = max(acked, ?) WHERE sink = ?", (through_seq, sink)
            )

    def dead_letter(self, sink: str, entry: Entry, error: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO dead_letters (sink, seq, line, error) VALUES (?,?,?,?)",
                (sink, entry.seq, entry.line, error),
            )

    def dead_letters(self, sink: str | None = None) -> list[tuple[str, int, str, str]]:
        sql = "SELECT sink, seq, line, error FROM dead_letters"
        args: tuple[str, ...] = ()
        if sink is not None:
            sql += " WHERE sink = ?"
            args = (sink,)
        with self._lock:
            return [tuple(r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def depth(self, sink: str) -> int:
        with self._lock:
            acked = self._cursor(sink)
            (n,) = self._db.execute(
                "SELECT count(*) FROM entries WHERE seq > ?", (acked,)
            ).fetchone()
        return int(n)

    # -- state and history ---------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value)
            )

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM entries").fetchone()
        return int(n)

    def lines(
        self,
        *,
        measurement: str | None = None,
        device: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> Iterator[Entry]:
        """The local history in time order, filtered; ``end_ns`` is exclusive."""
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
        sql = "SELECT seq, time_ns, measurement, device, audit, line FROM entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY time_ns, seq", args).fetchall()
        return (Entry(s, t, m, d, bool(a), line) for s, t, m, d, a, line in rows)

    # -- the bound -----------------------------------------------------------------------

    def live_bytes(self) -> int:
        with self._lock:
            (pages,) = self._db.execute("PRAGMA page_count").fetchone()
            (free,) = self._db.execute("PRAGMA freelist_count").fetchone()
            (size,) = self._db.execute("PRAGMA page_size").fetchone()
        return int((pages - free) * size)

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def _add_counter(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def enforce_bound(self) -> None:
        with self._lock:
            self._enforce_bound()

    def _enforce_bound(self) -> None:
        if self.live_bytes() <= self.max_bytes:
            return
        target = int(self.max_bytes * 0.9)
        delivered = min((self._cursor(s) for s in self.sinks), default=None)
        if delivered is None:  # no sink: everything is history
            delivered = self._max_seq()
        self._shrink(target, "seq <= ? AND audit = 0", (delivered,), count_as=None)
        if self.live_bytes() > self.max_bytes:
            dropped = self._shrink(target, "audit = 0", (), count_as="dropped")
            if dropped:
                reason = f"outbox at its bound of {self.max_bytes} bytes"
                log.error("outbox: dropped the %d oldest undelivered readings: %s", dropped, reason)
                if self.on_drop is not None:
                    self.on_drop(dropped, reason)
        if self.live_bytes() > self.max_bytes:
            log.critical(
                "outbox: %d bytes of audit records exceed the bound of %d; keeping them",
                self.live_bytes(),
                self.max_bytes,
            )

    def _max_seq(self) -> int:
        (top,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()
        return int(top)

    def _shrink(self, target: int, where: str, args: tuple[int, ...], count_as: str | None) -> int:
        """Delete the oldest rows matching ``where`` in chunks until live size <= target."""
        removed = 0
        while self.live_bytes() > target:
            (total,) = self._db.execute("SELECT count(*) FROM entries").fetchone()
            chunk = max(100, int(total) // 10)
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                f"DELETE FROM entries WHERE seq IN (SELECT seq FROM entries WHERE {where}"  # noqa: S608
                " ORDER BY seq LIMIT ?)",
                (*args, chunk),
            )
            if count_as is not None and cur.rowcount:
                self._add_counter(count_as, cur.rowcount)
            self._db.execute("COMMIT")
            removed += cur.rowcount
            if cur.rowcount == 0:
                break
        return removed

    # -- reporting -----------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._counter("dropped")

    def stats(self) -> OutboxStats:
        with self._lock:
            depth = {s: self.depth(s) for s in self.sinks}
            dead = {
                s: int(
                    self._db.execute(
                        "SELECT count(*) FROM dead_letters WHERE sink = ?", (s,)
                    ).fetchone()[0]
                )
                for s in self.sinks
            }
            oldest: dict[str, int | None] = {}
            for s in self.sinks:
                row = self._db.execute(
                    "SELECT time_ns FROM entries WHERE seq > ? ORDER BY seq LIMIT 1",
                    (self._cursor(s),),
                ).fetchone()
                oldest[s] = None if row is None else int(row[0])
            return OutboxStats(
                entries=self.count(),
                live_bytes=self.live_bytes(),
                max_bytes=self.max_bytes,
                dropped=self._counter("dropped"),
                depth=depth,
                dead_letters=dead,
                oldest_pending_ns=oldest,
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
