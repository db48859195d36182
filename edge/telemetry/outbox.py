"""The outbox: the gateway's memory. Every accepted reading is committed here first.

A SQLite database in WAL mode. A batch of readings is *accepted* when its transaction commits
(one fsync per batch, never per reading). ``synchronous=FULL`` makes every commit durable: a
committed batch survives a killed process *and* a power cut, as far as the disk honours fsync
(cheap SD cards with volatile write caches may not). With ``NORMAL`` a power cut could take the
commits since the last WAL checkpoint (up to ~4 MB of readings, audit records among them),
which is why FULL is used: one fsync per batch of up to 50 ms costs little. Only a cursor's
move (``ack``) commits without its own fsync: losing one to a power cut means a batch is sent
again, which InfluxDB overwrites point for point (the timestamps are the gateway's); the next
append's fsync makes it durable anyway.

Each sink has a cursor (the highest ``seq`` its database stored); an entry leaves a sink's
queue only when that database answered that it stored it, or refused that very line (then it
sits in the dead-letter table with the server's message, and the drainer moves the cursor past
it). A sink configured later starts at the beginning: it receives the local history too.

Delivered entries stay as the branch's local history (``lines()``) until space is needed. The
outbox is bounded on disk (``max_bytes``, measured as SQLite's live pages, every ~2 % of the
bound appended). Over the bound it frees space down to 90 % of it, in this order:

1. history every sink already stored (telemetry, then audit records);
2. the oldest undelivered telemetry: counted in the persistent ``dropped`` counter and reported
   through ``on_drop(count, reason)``;
3. never an undelivered audit record (nor any audit record when no sink is configured, because
   then the outbox is their only copy): if only those remain, the bound is exceeded and logged.

Freed pages are reused, so the file stops growing too: on disk it holds the bound, the pages
freed below it (~10 %) and the WAL (checkpointed at ~5 % of the bound, at most ~4 MB).
In memory a writer's SQLite page cache is bounded at ``CACHE_KIB`` (512 KiB of 4 KiB pages): the
outbox appends at the end of its tables and drains the newest entries, so that holds what it
touches. SQLite's default (2000 KiB) fills as the file grows, in the demo branch's gateway for
its first ~2.5 hours (+0.8 MB/hour), which read as a slow rise of its RSS (decision 110).

A committed entry can still vanish from the store: a file system or a disk that drops written
data, or the database under write errors (twice in the 30-day soak, right after a repaired
store came back as the disk filled; decision 115). The outbox notices: it remembers the
highest seq it committed and, before each write, compares it with the store's own counter
(``sqlite_sequence``, which AUTOINCREMENT never lowers). Lower means the last commits are gone.
The outbox keeps its last ``RECENT_ROWS`` committed rows (and the state each commit wrote) in
memory, so it commits the lost ones again, with the seqs they had, and the state with them;
the sinks' cursors are moved back to the counter, so every sink is sent them again (a
database overwrites a point it has: the same series and time). ``on_lost(first, last,
recovered)`` is called (the gateway's ``store_lost`` alert): ``recovered`` of the entries
``first..last`` came back; any older than the record are lost and said so.

A small key/value ``state`` (energy accounts, seen command ids) lives in the same file and can
be committed in the same transaction as the readings it was derived from. Everything persists:
a new ``Outbox`` on the same file resumes cursors, counters, dead letters and state.

One writer per store: a writing ``Outbox`` holds an exclusive ``flock`` on the sibling file
``<store>.lock`` (which records the holder's pid) from its opening to ``close()``. A second
writer, in this process or another, gets ``OutboxLocked`` naming the path and that pid. The
kernel releases the lock when its process dies, however it dies, so a SIGKILLed gateway never
leaves a stale lock behind. ``read_only`` opens take no lock: a report or a status beside a
running gateway. (The lock is advisory and local: a store on NFS is not protected.)

Opening checks the path first (``store_problem``): a folder, a device such as ``/dev/null``,
a file that is not an SQLite database, a read-only file or file system, or a parent that is a
file are an ``OutboxError`` that says so, before anything is created or locked; so is any
other error SQLite or the file system raises while the store opens.

Thread-safe: coordinators append on the event loop, drainers read and ack from worker threads.

Exceptions::

    OutboxError      anything the outbox refuses as a whole
    └── OutboxLocked another writer holds the store
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from openbranch.edge.core.reading import Reading

__all__ = [
    "CACHE_KIB",
    "RECENT_ROWS",
    "DeadLetter",
    "DropCallback",
    "Entry",
    "LostCallback",
    "Outbox",
    "OutboxError",
    "OutboxLocked",
    "OutboxNotReady",
    "OutboxStats",
    "Row",
    "lock_path",
    "parse_line",
    "rows_of",
    "store_problem",
]

log = logging.getLogger(__name__)


class OutboxError(Exception):
    """The outbox refuses to open or to act as a whole. Base of the hierarchy."""


class OutboxNotReady(OutboxError):
    """A read-only open of a store whose tables do not exist yet (its gateway is starting)."""


class OutboxLocked(OutboxError):
    """Another writer (a gateway, in this process or another) holds the store.

    ``pid`` is the holder's process id as it recorded it in the lock file (None when it could
    not be read, e.g. the holder had not written it yet).
    """

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = "another process" if pid is None else f"process {pid}"
        if pid == os.getpid():
            holder = f"this process ({pid}), through another Outbox"
        super().__init__(
            f"{path}: the local store is in use by {holder}: one gateway per store;"
            " stop the other gateway first"
        )


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
CREATE INDEX IF NOT EXISTS entries_time ON entries (time_ns);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, acked INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL,
    line TEXT NOT NULL,
    error TEXT NOT NULL
);
DELETE FROM dead_letters WHERE id NOT IN (SELECT min(id) FROM dead_letters GROUP BY sink, seq);
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_once ON dead_letters (sink, seq);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_SELECT_ENTRIES = "SELECT seq, time_ns, measurement, device, audit, line FROM entries"
_ROW_OVERHEAD = 48  # bytes an entry costs besides its line (columns, index), for the estimate
_HISTORY_PAGE = 5000  # rows per query when ``lines()`` streams the history
CACHE_KIB = 512
"""A writing outbox's page cache (``PRAGMA cache_size``), KiB: its share of the gateway's RSS."""

Row = tuple[int, str, str, int, str]
"""A pre-serialised entry: (time_ns, measurement, device, audit 0/1, line)."""

DropCallback = Callable[[int, str], None]
"""Called with (count, reason) after undelivered telemetry was dropped at the bound."""

LostCallback = Callable[[int, int, int], None]
"""Called with (first seq, last seq, entries committed again) when the store no longer held
entries it had committed."""

RECENT_ROWS = 500
"""Committed rows the outbox keeps in memory to commit again if the store loses them."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One committed reading: its position, what it is, and its line protocol."""

    seq: int
    time_ns: int
    measurement: str
    device: str
    audit: bool
    line: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A line a sink's database refused, with the server's message."""

    sink: str
    seq: int
    line: str
    error: str


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """A snapshot: rows, live size, the drop counter, and per sink depth/dead letters/oldest."""

    entries: int
    live_bytes: int
    max_bytes: int
    dropped: int
    depth: Mapping[str, int] = field(default_factory=dict)
    dead_letters: Mapping[str, int] = field(default_factory=dict)
    oldest_pending_ns: Mapping[str, int | None] = field(default_factory=dict)


_UNESCAPED_SPACE = re.compile(r"(?<!\\) ")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_UNESCAPE = re.compile(r"\\(.)")


def parse_line(line: str, *, audit: bool = False) -> Row:
    """The outbox row of one line of line protocol: its measurement, device tag and time.

    The line must carry its timestamp (nanoseconds): the gateway never lets the server stamp
    a reading. Raises ValueError otherwise.
    """
    key = _UNESCAPED_SPACE.split(line, maxsplit=1)[0]
    measurement, *tags = _UNESCAPED_COMMA.split(key)
    device = ""
    for tag in tags:
        name, _, value = tag.partition("=")
        if name == "device":
            device = _UNESCAPE.sub(r"\1", value)
    stamp = line.rstrip().rsplit(" ", 1)[-1]
    if line.count(" ") < 2 or not stamp.lstrip("-").isdigit():
        raise ValueError(f"line has no timestamp: {line[:120]!r}")
    return int(stamp), _UNESCAPE.sub(r"\1", measurement), device, int(audit), line


_SQLITE_HEADER = b"SQLite format 3\x00"


def store_problem(path: Path | str, *, as_this_user: bool = True) -> str | None:
    """Why ``path`` cannot be a writable local store, or None. Creates nothing.
    ``as_this_user=False``: leave out what depends on who runs the gateway (permissions)."""
    path = Path(path)
    try:
        if path.exists():
            return _existing_store_problem(path, as_this_user=as_this_user)
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            return f"{parent} is not a folder"
        if _read_only_fs(parent):
            return f"cannot create it: {parent} is on a read-only file system"
        if as_this_user and not os.access(parent, os.W_OK | os.X_OK):
            return f"cannot create it: {parent} is not writable"
    except OSError as exc:
        return f"cannot use it: {exc.strerror or exc}"
    return None


def _existing_store_problem(path: Path, *, as_this_user: bool) -> str | None:
    problem = None
    if path.is_dir():
        problem = "is a folder, not a file"
    elif not path.is_file():
        problem = "is not a regular file (a device or a pipe cannot hold a store)"
    elif not os.access(path, os.R_OK):
        problem = "is not readable" if as_this_user else None
    elif _head(path) not in (b"", _SQLITE_HEADER):
        problem = "is not an SQLite database (so not a local store): give another path"
    elif _read_only_fs(path):
        problem = "is on a read-only file system"
    elif as_this_user and not os.access(path, os.W_OK):
        problem = "is not writable"
    return problem


def _head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(len(_SQLITE_HEADER))


def _read_only_fs(path: Path) -> bool:
    """Whether ``path`` is on a file system mounted read-only (root may write any file, but
    not there)."""
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def rows_of(readings: Iterable[Reading], *, audit: bool = False) -> list[Row]:
    """The outbox rows of readings (``append_rows`` commits rows of several kinds at once)."""
    flag = int(audit)
    return [(r.time_ns, r.measurement.name, r.device, flag, r.to_line()) for r in readings]


def lock_path(path: Path | str) -> Path:
    """The sibling file whose ``flock`` a writing ``Outbox`` on ``path`` holds (beside the
    store's real path, so that two names of one file share one lock)."""
    path = Path(path).resolve()
    return path.with_name(path.name + ".lock")


def _lock(path: Path) -> int:
    """Take the writer's lock of the store at ``path``: the lock file's descriptor.

    The descriptor is not inherited by child processes (``O_CLOEXEC``); closing it, or the
    end of the process, releases the lock. Raises ``OutboxLocked`` when another holds it.
    """
    target = lock_path(path)
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _holder(fd)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise OutboxLocked(path, holder) from None
        raise
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):  # the pid is for the message only
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class Outbox:
    """The durable queue and local history of one gateway (see the module docstring).

    ``sinks`` names the configured sinks (their cursors); ``check_every_bytes`` is how many
    bytes of appended lines pass between two measurements of the live size.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int = 1_000_000_000,
        sinks: Sequence[str] = (),
        on_drop: DropCallback | None = None,
        on_lost: LostCallback | None = None,
        check_every_bytes: int | None = None,
        read_only: bool = False,
    ) -> None:
        """``read_only``: open an existing store to read its history only (a report on a live
        gateway's file): no schema script, no pragma that writes, SQLite refuses writes, and
        no lock. A writer raises ``OutboxLocked`` while another writer has the store open."""
        self.path = Path(path)
        self.read_only = read_only
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        self.on_lost = on_lost
        self._top = 0  # the highest seq this outbox committed (or found at its opening)
        # its last commits, newest last: (first seq, rows, state), at most RECENT_ROWS rows
        self._recent: deque[tuple[int, Sequence[Row], Mapping[str, str]]] = deque()
        self._recent_rows = 0
        self.sinks = tuple(sinks)
        self._check_every = check_every_bytes or max(4096, max_bytes // 50)
        self._since_check = 0
        self._lock = threading.RLock()
        if read_only:
            if not self.path.is_file():
                raise FileNotFoundError(f"{self.path}: no such local store")
            self._db = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro",
                uri=True,
                check_same_thread=False,
                isolation_level=None,
                timeout=30.0,
            )
            made = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries'"
            ).fetchone()
            if made is None:  # a gateway starting this very moment has not made its tables
                self._db.close()
                raise OutboxNotReady(f"{self.path}: not a local store yet (a gateway is making it)")
            return
        problem = store_problem(self.path)
        if problem is not None:
            raise OutboxError(f"{self.path}: {problem}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = _lock(self.path)
        except OSError as exc:
            raise OutboxError(f"{self.path}: cannot open the local store: {exc}") from exc
        # released when the Outbox closes or is garbage-collected unclosed (no fd leaks)
        self._unlock = weakref.finalize(self, os.close, lock_fd)
        try:
            self._open_for_writing(max_bytes)
        except (OSError, sqlite3.Error) as exc:
            self._unlock()
            raise OutboxError(f"{self.path}: cannot open the local store: {exc}") from exc
        except BaseException:
            self._unlock()
            raise

    def _open_for_writing(self, max_bytes: int) -> None:
        self._db = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        wal_pages = min(1000, max(16, max_bytes // 20 // 4096))  # the WAL: <= ~5 % of the bound
        self._db.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
        self._db.execute(f"PRAGMA journal_size_limit={wal_pages * 4096}")
        self._db.executescript(_SCHEMA)
        self._db.executemany(
            "INSERT OR IGNORE INTO cursors (sink, acked) VALUES (?, 0)", [(s,) for s in self.sinks]
        )
        self._top = self._sequence()
        (acked,) = self._db.execute("SELECT coalesce(max(acked), 0) FROM cursors").fetchone()
        # a cursor past the counter: the store lost entries (and kept an ack) before this
        # opening; the first append finds and reports it, once someone listens
        self._top = max(self._top, int(acked))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database, then release the writer's lock (closing twice is harmless)."""
        with self._lock:
            self._db.close()
            if not self.read_only:
                self._unlock()

    # -- accepting -----------------------------------------------------------------------

    def append(
        self,
        readings: Sequence[Reading],
        *,
        audit: bool = False,
        state: Mapping[str, str] | None = None,
    ) -> None:
        """Commit ``readings`` (and ``state`` derived from them) in one transaction.

        When this returns, the readings are accepted: they survive a crash and a power cut.
        ``audit`` marks them as audit records, which the bound never drops.
        """
        self.append_rows(rows_of(readings, audit=audit), state=state)

    def append_lines(
        self,
        lines: Iterable[str],
        *,
        audit: bool = False,
        state: Mapping[str, str] | None = None,
    ) -> None:
        """Commit pre-serialised lines of line protocol (each with its timestamp)."""
        self.append_rows([parse_line(line, audit=audit) for line in lines], state=state)

    def append_rows(self, rows: Sequence[Row], *, state: Mapping[str, str] | None = None) -> None:
        """Commit pre-serialised rows (see ``Row``) and ``state`` in one transaction."""
        dropped = 0
        with self._writing():
            with self._transaction():
                self._insert(rows)
                if state:
                    self._put_state(state)
                top = self._sequence()
            self._top = top
            self._remember(top - len(rows) + 1, rows, state or {})
            self._since_check += sum(len(r[4]) for r in rows) + _ROW_OVERHEAD * len(rows)
            if self._since_check >= self._check_every:
                # the rows are committed: a failure from here on must not look like a failed
                # commit (the caller would commit them again)
                try:
                    dropped = self._enforce_bound()
                except (sqlite3.Error, OSError) as exc:
                    log.error(
                        "outbox: the bound could not be applied (%s); the commit stands, the"
                        " bound is tried again at the next append",
                        exc,
                    )
                else:
                    self._since_check = 0
        self._report_drop(dropped)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the outbox for a write, once commits the store lost (if any) are back."""
        lost = None
        try:
            with self._lock:
                lost = self._find_lost()
                yield
        finally:
            self._report_lost(lost)

    def purge(self, measurement: str, *, tag: tuple[str, str], before_ns: int) -> int:
        """Delete the entries of ``measurement`` carrying ``tag`` (key, value) older than
        ``before_ns``, delivered or not: a retention period (the entry records' privacy) wins
        over delivery. Returns how many were deleted."""
        key, value = tag
        needles = (f",{key}={value},", f",{key}={value} ")
        with self._writing(), self._transaction():
            cur = self._db.execute(
                "DELETE FROM entries WHERE measurement = ? AND time_ns < ?"
                " AND (instr(line, ?) > 0 OR instr(line, ?) > 0)",
                (measurement, before_ns, *needles),
            )
        return int(cur.rowcount)

    # -- draining ------------------------------------------------------------------------

    def pending(self, sink: str, limit: int) -> list[Entry]:
        """Up to ``limit`` entries ``sink`` has not stored yet, oldest (lowest seq) first."""
        with self._lock:
            rows = self._db.execute(
                _SELECT_ENTRIES + " WHERE seq > ? ORDER BY seq LIMIT ?",
                (self._cursor(sink), limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    def pending_lines(self, sink: str, limit: int) -> tuple[int, list[str]]:
        """The last seq and the lines of up to ``limit`` pending entries (the fast path).

        With nothing pending, the seq is the sink's cursor and the list is empty.
        """
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
        """``sink``'s database stored (or dead-lettered) every entry up to ``through_seq``.

        The cursor only moves forward; acking an older seq again is harmless. It never moves
        past the highest seq this outbox committed (see the module docstring on lost commits).
        """
        with self._writing():
            self._db.execute("PRAGMA synchronous=NORMAL")  # see the module docstring
            try:
                cur = self._db.execute(
                    "UPDATE cursors SET acked = max(acked, ?) WHERE sink = ?",
                    (min(through_seq, self._top), sink),
                )
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            if cur.rowcount == 0:
                raise KeyError(self._unknown(sink))

    def dead_letter(self, sink: str, failures: Iterable[tuple[Entry, str]]) -> None:
        """Record lines ``sink``'s database refused, each with the server's message.

        Recording the same entry twice (a retry after a crash) keeps one record. The entries
        count as handled once the caller acks past them, as the drainer does right after.
        """
        rows = [(sink, e.seq, e.line, error) for e, error in failures]
        with self._writing(), self._transaction():
            self._cursor(sink)
            self._db.executemany(
                "INSERT OR IGNORE INTO dead_letters (sink, seq, line, error) VALUES (?,?,?,?)",
                rows,
            )

    def dead_letters(self, sink: str | None = None) -> list[DeadLetter]:
        """Dead letters in the order they were recorded, of one sink or of all."""
        sql = "SELECT sink, seq, line, error FROM dead_letters"
        args: tuple[str, ...] = ()
        if sink is not None:
            sql, args = sql + " WHERE sink = ?", (sink,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [DeadLetter(str(s), int(q), str(line), str(e)) for s, q, line, e in rows]

    def depth(self, sink: str) -> int:
        """How many entries ``sink`` has not stored yet."""
        with self._lock:
            (n,) = self._db.execute(
                "SELECT count(*) FROM entries WHERE seq > ?", (self._cursor(sink),)
            ).fetchone()
        return int(n)

    def oldest_pending_ns(self, sink: str) -> int | None:
        """The reading time of ``sink``'s oldest pending entry (None: nothing pending)."""
        with self._lock:
            row = self._db.execute(
                "SELECT time_ns FROM entries WHERE seq > ? ORDER BY seq LIMIT 1",
                (self._cursor(sink),),
            ).fetchone()
        return None if row is None else int(row[0])

    def _sequence(self) -> int:
        """The store's own counter: the highest seq it ever gave an entry."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
        return 0 if row is None else int(row[0])

    def _insert(self, rows: Sequence[Row]) -> None:
        self._db.executemany(
            "INSERT INTO entries (time_ns, measurement, device, audit, line) VALUES (?,?,?,?,?)",
            rows,
        )

    def _remember(self, first: int, rows: Sequence[Row], state: Mapping[str, str]) -> None:
        self._recent.append((first, rows, state))
        self._recent_rows += len(rows)
        while self._recent_rows > RECENT_ROWS and len(self._recent) > 1:
            self._recent_rows -= len(self._recent.popleft()[1])

    def _find_lost(self) -> tuple[int, int, int] | None:
        """Before a write: the seqs this outbox committed that the store no longer knows (its
        counter is lower), committed again from the record of recent commits as far as it
        reaches, with the cursors moved back to the counter. Returns (first, last, how many
        came back), or None when nothing is lost. A failure raises (the caller's write fails
        and is retried), and then the loss is found again."""
        now = self._sequence()
        if now >= self._top:
            return None
        # the lost tail: the commits after the last one whose entries the store still holds
        # (a commit of state alone may or may not be in it: its state is written again, which
        # the later commits then overwrite as they did)
        tail: list[tuple[int, Sequence[Row], Mapping[str, str]]] = []
        for commit in reversed(self._recent):
            first, rows, _ = commit
            if rows and first + len(rows) - 1 <= now:
                break
            tail.insert(0, commit)
        # each with the seq it had: an ack a drainer sends for what it read before the loss
        # still means the same entries (those older than the record stay a gap)
        again = [(seq, *row) for first, rows, _ in tail for seq, row in enumerate(rows, first)]
        again = [row for row in again if row[0] > now]
        with self._transaction():
            self._db.execute("UPDATE cursors SET acked = min(acked, ?)", (now,))
            self._db.executemany(
                "INSERT OR IGNORE INTO entries (seq, time_ns, measurement, device, audit, line)"
                " VALUES (?,?,?,?,?,?)",
                again,
            )
            for _, _, state in tail:
                self._put_state(state)
        lost = (now + 1, self._top, len(again))
        self._top = max(now, self._sequence())
        return lost

    def _report_lost(self, lost: tuple[int, int, int] | None) -> None:
        if lost is None:
            return
        first, last, recovered = lost
        log.critical(
            "outbox: the store no longer held entries %d..%d it had committed (the file system"
            " or the disk lost written data); %d of %d committed again from memory; the sinks"
            " are sent them again",
            first,
            last,
            recovered,
            last - first + 1,
        )
        if self.on_lost is not None:
            self.on_lost(first, last, recovered)

    def _cursor(self, sink: str) -> int:
        row = self._db.execute("SELECT acked FROM cursors WHERE sink = ?", (sink,)).fetchone()
        if row is None:
            raise KeyError(self._unknown(sink))
        return int(row[0])

    def _unknown(self, sink: str) -> str:
        return f"unknown sink {sink!r} (known: {', '.join(self.sinks) or 'none'})"

    # -- state -----------------------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        """Store one value on its own (to commit it with readings, use ``append(state=)``)."""
        with self._writing():
            self._put_state({key: value})

    def _put_state(self, state: Mapping[str, str]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", list(state.items())
        )

    # -- history ---------------------------------------------------------------------------

    def newest_ns(self) -> int | None:
        """The reading time of the entry committed last (None: the store is empty)."""
        with self._lock:
            row = self._db.execute(
                "SELECT time_ns FROM entries ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        return None if row is None else int(row[0])

    def latest(self, measurement: str, device: str) -> Entry | None:
        """The entry of ``device`` in ``measurement`` committed last, while the store still
        holds it (pending or history), or None."""
        with self._lock:
            row = self._db.execute(
                _SELECT_ENTRIES + " WHERE measurement = ? AND device = ? ORDER BY seq DESC LIMIT 1",
                (measurement, device),
            ).fetchone()
        return None if row is None else _entry(row)

    def count(self) -> int:
        """How many entries the outbox holds (pending and history)."""
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
        """The local history in time order, filtered; ``end_ns`` is exclusive.

        Streams in pages, so a long history does not sit in memory at once. Queries walk an
        index in time order (by measurement and time, or by time); a device is filtered.
        """
        after: tuple[int, int] | None = None
        while True:
            # after the last row: one lower bound on time_ns (an index seek, not a scan from
            # the start of the range on every page), then the tie on seq
            low = start_ns if after is None else after[0]  # rows so far were >= start_ns
            where, args = _history_filter(measurement, device, low, end_ns)
            if after is not None:
                where.append("(time_ns > ? OR seq > ?)")
                args += [after[0], after[1]]
            sql = _SELECT_ENTRIES
            if where:
                sql += " WHERE " + " AND ".join(where)
            with self._lock:
                rows = self._db.execute(
                    sql + " ORDER BY time_ns, seq LIMIT ?", (*args, _HISTORY_PAGE)
                ).fetchall()
            yield from (_entry(row) for row in rows)
            if len(rows) < _HISTORY_PAGE:
                return
            after = (int(rows[-1][1]), int(rows[-1][0]))

    # -- the bound -------------------------------------------------------------------------

    def live_bytes(self) -> int:
        """Bytes of the database in use: (page_count - freelist_count) * page_size."""
        with self._lock:
            (pages,) = self._db.execute("PRAGMA page_count").fetchone()
            (free,) = self._db.execute("PRAGMA freelist_count").fetchone()
            (size,) = self._db.execute("PRAGMA page_size").fetchone()
        return int((pages - free) * size)

    def enforce_bound(self) -> int:
        """Apply the bound now (appends do it every ~2 % of it); returns how many were dropped."""
        with self._lock:
            dropped = self._enforce_bound()
        self._report_drop(dropped)
        return dropped

    def _enforce_bound(self) -> int:
        if self.live_bytes() <= self.max_bytes:
            return 0
        target = int(self.max_bytes * 0.9)
        delivered = self._delivered_through()
        self._shrink(target, "seq <= ? AND audit = 0", (delivered,))
        if self.sinks:  # audit records every database has; without sinks this is their home
            self._shrink(target, "seq <= ?", (delivered,))
        dropped = 0
        if self.live_bytes() > self.max_bytes:
            dropped = self._shrink(target, "audit = 0", ())
            if dropped:
                self._add_counter("dropped", dropped)
        if self.live_bytes() > self.max_bytes:
            log.critical(
                "outbox: %d bytes of undelivered audit records exceed the bound of %d bytes;"
                " keeping them (an audit record is never dropped)",
                self.live_bytes(),
                self.max_bytes,
            )
        return dropped

    def _delivered_through(self) -> int:
        """The highest seq every sink has; with no sink, everything is history."""
        if not self.sinks:
            (top,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()
            return int(top)
        return min(self._cursor(s) for s in self.sinks)

    def _shrink(self, target: int, where: str, args: tuple[int, ...]) -> int:
        """Delete the oldest entries matching ``where`` until the live size is <= ``target``.

        Deletes in chunks sized from the average entry, re-measuring after each; returns how
        many entries it deleted.
        """
        removed = 0
        (total,) = self._db.execute("SELECT count(*) FROM entries").fetchone()
        per_row = max(1, self.live_bytes() // max(1, int(total)))
        while (excess := self.live_bytes() - target) > 0:
            chunk = max(100, excess // per_row + 1)
            with self._transaction():
                cur = self._db.execute(
                    "DELETE FROM entries WHERE seq IN (SELECT seq FROM entries"  # noqa: S608
                    f" WHERE {where} ORDER BY seq LIMIT ?)",  # ``where`` is one of our clauses
                    (*args, chunk),
                )
            removed += cur.rowcount
            if cur.rowcount < chunk:
                break  # nothing more matches
        return removed

    def _report_drop(self, dropped: int) -> None:
        if not dropped:
            return
        reason = f"outbox at its bound of {self.max_bytes:,} bytes"
        log.error("outbox: dropped the %d oldest undelivered readings: %s", dropped, reason)
        if self.on_drop is not None:
            self.on_drop(dropped, reason)

    # -- counters and reporting --------------------------------------------------------------

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def _add_counter(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    @property
    def dropped(self) -> int:
        """Undelivered readings dropped at the bound, ever (persistent)."""
        with self._lock:
            return self._counter("dropped")

    def stats(self) -> OutboxStats:
        with self._lock:
            dead = dict(self._db.execute("SELECT sink, count(*) FROM dead_letters GROUP BY sink"))
            return OutboxStats(
                entries=self.count(),
                live_bytes=self.live_bytes(),
                max_bytes=self.max_bytes,
                dropped=self._counter("dropped"),
                depth={s: self.depth(s) for s in self.sinks},
                dead_letters={s: int(dead.get(s, 0)) for s in self.sinks},
                oldest_pending_ns={s: self.oldest_pending_ns(s) for s in self.sinks},
            )


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            if self._db.in_transaction:  # SQLite rolls back by itself on some errors (I/O,
                self._db.execute("ROLLBACK")  # full): a ROLLBACK then would hide the error
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error:  # e.g. the disk is full: nothing of the block was committed
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise


def _entry(row: tuple[int, int, str, str, int, str]) -> Entry:
    seq, time_ns, measurement, device, audit, line = row
    return Entry(int(seq), int(time_ns), str(measurement), str(device), bool(audit), str(line))


def _history_filter(
    measurement: str | None, device: str | None, start_ns: int | None, end_ns: int | None
) -> tuple[list[str], list[object]]:
    where: list[str] = []
    args: list[object] = []
    for clause, value in (
        ("measurement = ?", measurement),
        ("device = ?", device),
        ("time_ns >= ?", start_ns),
        ("time_ns < ?", end_ns),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    return where, args
