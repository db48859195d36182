"""The pseudonym key's file, the offline allow-list and the retention of entry records, on
real files and a real local store (SQLite)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.privacy import pseudonym
from openbranch.edge.runtime.allowlist import (
    ALLOWLIST_FILE,
    KEY_FILE,
    AllowList,
    EntryKeyError,
    entry_key,
    purge_entry_records,
)
from openbranch.edge.runtime.journal import Journal
from openbranch.edge.telemetry.outbox import Outbox

CARD, OTHER = "2200000000017", "2200000000025"
START = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)


def test_the_key_is_made_once_beside_the_store_and_kept_private(tmp_path: Path) -> None:
    store = tmp_path / "var" / "outbox.db"
    key = entry_key(store)
    path = store.parent / KEY_FILE
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert entry_key(store) == key  # the same key after a restart
    path.chmod(0o644)
    with pytest.raises(EntryKeyError, match="others may read the key"):
        entry_key(store)
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(EntryKeyError, match="5 bytes, a key has 32"):
        entry_key(store)


def test_offline_allow_list(tmp_path: Path) -> None:
    store = tmp_path / "outbox.db"
    clock = ScaledClock(start=START, speed=1.0)
    allow = AllowList.beside(store, days=14, clock=clock)
    allow.remember(CARD)
    allow.remember(OTHER)
    assert allow.admit_offline(CARD)
    assert not allow.admit_offline("2200000000033")  # never admitted online
    allow.forget(OTHER)  # refused online later (reported lost): no longer admitted offline
    assert not allow.admit_offline(OTHER)
    allow.close()

    clock.step(timedelta(days=13))
    allow = AllowList.beside(store, days=14, clock=clock)  # persisted across a restart
    assert allow.admit_offline(CARD)
    clock.step(timedelta(days=2))  # 15 days after the admission
    assert not allow.admit_offline(CARD)
    assert (len(allow), allow.expire(), len(allow)) == (1, 1, 0)
    allow.remember(CARD)
    allow.close()

    path = tmp_path / ALLOWLIST_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = b"".join(p.read_bytes() for p in tmp_path.glob(ALLOWLIST_FILE + "*"))
    key = entry_key(store)
    assert pseudonym(key, CARD).encode() in written  # kept as its keyed hash ...
    for card in (CARD, OTHER):
        assert card.encode() not in written  # ... never as the number


def test_entry_records_past_retention_are_deleted(tmp_path: Path) -> None:
    clock = ScaledClock(start=START, speed=1.0)
    with Outbox(tmp_path / "outbox.db", sinks=["influx"]) as outbox:
        journal = Journal(
            branch="hovedbib",
            clock=clock,
            record=lambda readings: outbox.append(readings, audit=True),
            publish_own=lambda _readings: None,
        )
        journal.audit("entry", "reader-1: card 0f3a admitted (admitted)")
        journal.audit("entry_lockout", "card 0f3a locked for 300 s after 3 wrong PINs")
        journal.audit("command", "door-main.unlock := True (entry)")
        clock.step(timedelta(days=29))
        journal.audit("entry", "reader-1: card 0f3a refused (wrong_pin)")
        clock.step(timedelta(days=2))  # the first entry records are 31 days old now

        assert purge_entry_records(outbox, clock=clock, days=30) == 2  # decision and lockout
        left = [e.line for e in outbox.lines()]
    assert len(left) == 2
    assert any("wrong_pin" in line for line in left)  # 2 days old: kept
    assert any("kind=command" in line for line in left)  # not an entry record: kept
