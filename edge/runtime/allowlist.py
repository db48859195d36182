"""Self-service entry's memory, personal data kept to the least: the gateway's pseudonym key,
the offline allow-list, and the retention of entry records.

- The key: ``entry.key`` beside the local store (the outbox), 32 random bytes made on first
  use with mode 0600, never sent anywhere (not in the config, not from provisioning). Losing
  it loses only the allow-list's matches and the audit's link across the change.
- The allow-list (``allowlist.db`` beside the local store): for each card admitted online, its
  pseudonym and when; ``admit_offline(card)`` is true while that is within ``days``. No card
  number and no PIN is stored; expired rows are deleted, and a card the library system refuses
  online is forgotten at once.
- Retention: ``purge_entry_records`` deletes the entry decisions (audit kind ``entry``) older
  than the retention period from the local store's history, delivered or not.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import stat
import threading
from datetime import timedelta
from pathlib import Path

from openbranch.edge.core import schema
from openbranch.edge.core.admission import ENTRY_AUDIT, PERSONAL_AUDIT_KINDS
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.privacy import KEY_BYTES, pseudonym
from openbranch.edge.telemetry.outbox import Outbox

__all__ = [
    "ALLOWLIST_FILE",
    "ENTRY_AUDIT_KIND",
    "KEY_FILE",
    "AllowList",
    "EntryKeyError",
    "entry_key",
    "purge_entry_records",
]

log = logging.getLogger(__name__)

KEY_FILE = "entry.key"
ALLOWLIST_FILE = "allowlist.db"
ENTRY_AUDIT_KIND = ENTRY_AUDIT  # the audit kind of an entry decision (edge.runtime.entry)


class EntryKeyError(Exception):
    """The pseudonym key's file is unusable: readable by others, or not a key."""


def entry_key(store: Path) -> bytes:
    """The gateway's pseudonym key, from ``entry.key`` beside the local store ``store``;
    made (0600, random) when there is none. A key file others may read is refused."""
    path = store.parent / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(KEY_BYTES))
            out.flush()
            os.fsync(out.fileno())
        log.info("entry: made the pseudonym key %s (0600)", path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise EntryKeyError(f"{path}: mode {mode:04o}, others may read the key; chmod 600 it")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise EntryKeyError(f"{path}: {len(key)} bytes, a key has {KEY_BYTES}")
    return key


class AllowList:
    """Cards admitted online within ``days``, as pseudonyms (``OfflineAllowList``)."""

    def __init__(self, path: Path, *, key: bytes, days: int, clock: Clock) -> None:
        self.path = path
        self.days = days
        self._key = key
        self._clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS admitted (card TEXT PRIMARY KEY, at REAL NOT NULL)"
        )
        os.chmod(path, 0o600)

    @classmethod
    def beside(cls, store: Path, *, days: int, clock: Clock) -> AllowList:
        """The allow-list beside the local store, keyed with the gateway's key."""
        return cls(store.parent / ALLOWLIST_FILE, key=entry_key(store), days=days, clock=clock)

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def remember(self, card: str) -> None:
        """``card`` was just admitted online."""
        with self._lock:
            self._db.execute(
                "INSERT INTO admitted (card, at) VALUES (?, ?)"
                " ON CONFLICT (card) DO UPDATE SET at = excluded.at",
                (pseudonym(self._key, card), self._now()),
            )

    def forget(self, card: str) -> None:
        """The library system refused ``card`` online (lost, blocked, not a patron)."""
        with self._lock:
            self._db.execute("DELETE FROM admitted WHERE card = ?", (pseudonym(self._key, card),))

    def admit_offline(self, card: str) -> bool:
        """Whether ``card`` was admitted online within the last ``days``."""
        with self._lock:
            row = self._db.execute(
                "SELECT at FROM admitted WHERE card = ?", (pseudonym(self._key, card),)
            ).fetchone()
        return row is not None and row[0] >= self._now() - timedelta(days=self.days).total_seconds()

    def expire(self) -> int:
        """Delete the cards admitted longer ago than ``days``; returns how many."""
        cutoff = self._now() - timedelta(days=self.days).total_seconds()
        with self._lock:
            cur = self._db.execute("DELETE FROM admitted WHERE at < ?", (cutoff,))
        return int(cur.rowcount)

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM admitted").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def purge_entry_records(outbox: Outbox, *, clock: Clock, days: int = 30) -> int:
    """Delete the records that carry a card's pseudonym (entry decisions, lockouts) older
    than ``days`` from the local store; returns how many."""
    cutoff = int((clock.now() - timedelta(days=days)).timestamp() * 1e9)
    removed = sum(
        outbox.purge(schema.AUDIT.name, tag=(schema.Tag.KIND.value, kind), before_ns=cutoff)
        for kind in PERSONAL_AUDIT_KINDS
    )
    if removed:
        log.info("entry: deleted %d entry records older than %d days", removed, days)
    return removed
