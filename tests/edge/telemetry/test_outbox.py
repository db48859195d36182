"""The outbox: commit first, per-sink cursors, dead letters, state, history, the bound, restarts."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading, to_ns
from openbranch.edge.telemetry import outbox as outbox_module
from openbranch.edge.telemetry.outbox import (
    DeadLetter,
    Outbox,
    OutboxError,
    OutboxLocked,
    OutboxNotReady,
    lock_path,
    parse_line,
)
from tests.support.fresh import run_python

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)
T0_NS = 1_795_521_600_000_000_000


def readings(n: int, *, start: int = 0, device: str = "meter") -> list[Reading]:
    return [
        Reading(
            branch="b",
            device=device,
            measurement=schema.OCCUPANCY,
            fields={"entered": i},
            time=T0 + timedelta(seconds=i),
        )
        for i in range(start, start + n)
    ]


def test_pending_ack_and_resume_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, sinks=["a", "b"])
    box.append(readings(10))
    first = box.pending("a", 4)
    assert [e.seq for e in first] == [1, 2, 3, 4]
    assert first[0].line == f"occupancy,branch=b,device=meter entered=0i {T0_NS}"
    assert (first[0].measurement, first[0].device, first[0].time_ns) == (
        "occupancy",
        "meter",
        T0_NS,
    )
    box.ack("a", first[-1].seq)
    box.ack("a", 2)  # the cursor never moves back
    assert box.depth("a") == 6
    assert box.depth("b") == 10
    assert box.pending_lines("a", 2) == (6, [e.line for e in box.pending("a", 2)])
    box.close()
    with Outbox(path, sinks=["a", "b"]) as again:
        assert [e.seq for e in again.pending("a", 100)] == list(range(5, 11))
        assert again.depth("b") == 10
        again.append(readings(1, start=99))
        assert again.pending("b", 100)[-1].seq == 11


def test_unknown_sink_is_an_error(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", sinks=["a"]) as box:
        for call in (lambda: box.pending("x", 1), lambda: box.ack("x", 1), lambda: box.depth("x")):
            with pytest.raises(KeyError, match="unknown sink 'x'"):
                call()


def test_dead_letters_persist_once_and_count_as_handled(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, sinks=["a"])
    box.append(readings(3))
    bad = box.pending("a", 3)[1]
    box.dead_letter("a", [(bad, "field type conflict")])
    box.dead_letter("a", [(bad, "field type conflict")])  # a retry after a crash: kept once
    box.ack("a", 3)
    box.close()
    with Outbox(path, sinks=["a"]) as again:
        assert again.dead_letters("a") == [DeadLetter("a", 2, bad.line, "field type conflict")]
        assert again.stats().dead_letters == {"a": 1}
        assert again.depth("a") == 0


def test_state_commits_with_its_readings_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    box.append(readings(1), state={"energy:meter": '{"total": 5}'})
    assert box.get_state("energy:meter") == '{"total": 5}'
    assert box.get_state("missing") is None
    broken = (0, "occupancy", "meter", 0, None)  # NOT NULL fails inside the transaction
    with pytest.raises(sqlite3.IntegrityError):
        box.append_rows([broken], state={"energy:meter": '{"total": 9}'})  # type: ignore[list-item]
    assert box.get_state("energy:meter") == '{"total": 5}'  # rolled back with the readings
    assert box.count() == 1
    box.set_state("seen:cmd-1", "1")
    box.close()
    with Outbox(path) as again:
        assert again.get_state("seen:cmd-1") == "1"


def test_history_query_by_measurement_device_and_time(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append(readings(5, device="x") + readings(5, device="y"))
    box.append_lines([f"energy,branch=b,carrier=electricity,device=x total=1.5 {T0_NS + 2}"])
    start = T0_NS + 1 * 10**9
    end = T0_NS + 3 * 10**9
    got = list(box.lines(device="x", start_ns=start, end_ns=end))
    assert [e.line.split()[1] for e in got] == ["entered=1i", "entered=2i"]
    assert [e.device for e in box.lines(measurement="energy")] == ["x"]
    assert len(list(box.lines(start_ns=T0_NS, end_ns=T0_NS + 1))) == 2  # x and y at T0


def test_history_streams_long_ranges_in_time_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append(readings(6000, start=6000))
    box.append(readings(6000))  # older readings committed later
    times = [e.time_ns for e in box.lines(measurement="occupancy")]
    assert len(times) == 12_000
    assert times == sorted(times)


def test_history_pages_through_ties_and_a_time_range_exactly_once(tmp_path: Path) -> None:
    """Pages of 5,000 rows: 40 devices per second, so pages end in the middle of a second;
    every row in [start, end) comes once, in (time, commit) order, and none outside it."""
    box = Outbox(tmp_path / "o.db")
    for d in range(40):
        box.append(readings(400, device=f"m{d}"))  # 16,000 rows, 40 per second
    start_ns, end_ns = to_ns(T0 + timedelta(seconds=7)), to_ns(T0 + timedelta(seconds=390))
    got = [(e.time_ns, e.seq) for e in box.lines(start_ns=start_ns, end_ns=end_ns)]
    assert len(got) == 383 * 40
    assert len(set(got)) == len(got)
    assert got == sorted(got)
    assert got[0][0] == start_ns and got[-1][0] < end_ns


def test_parse_line_takes_measurement_device_and_time() -> None:
    line = r'my\ meas,branch=b,device=door\ 1,zone=x msg="a b, c" 1795521600000000001'
    assert parse_line(line, audit=True) == (1795521600000000001, "my meas", "door 1", 1, line)
    assert parse_line("gateway,branch=b outbox_depth=1i 5")[:3] == (5, "gateway", "")
    with pytest.raises(ValueError, match="no timestamp"):
        parse_line("occupancy,branch=b entered=1i")


def test_concurrent_appends_and_acks_lose_nothing(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", sinks=["a"])
    delivered: list[int] = []
    done = threading.Event()

    def drain() -> None:
        while not done.is_set() or box.depth("a"):
            batch = box.pending("a", 97)
            delivered.extend(e.seq for e in batch)
            if batch:
                box.ack("a", batch[-1].seq)

    worker = threading.Thread(target=drain)
    worker.start()
    for i in range(100):
        box.append(readings(20, start=i * 20))
    done.set()
    worker.join(timeout=30)
    assert delivered == list(range(1, 2001))


def test_bound_forgets_delivered_history_before_dropping(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=300_000, sinks=["a"], check_every_bytes=1)
    box.append(readings(1500))  # ~230 kB
    box.append(readings(20, device="audit-log"), audit=True)
    box.ack("a", box.pending("a", 10_000)[-1].seq)  # all of it delivered: history now
    for i in range(1, 6):
        box.append(readings(200, start=10_000 * i))
    assert box.live_bytes() <= 300_000
    assert box.count() < 2500  # history went
    assert box.dropped == 0  # and only history
    assert box.depth("a") == 5 * 200


def test_delivered_audit_goes_before_undelivered_telemetry(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=300_000, sinks=["a"], check_every_bytes=1)
    box.append(readings(1000, device="audit-log"), audit=True)
    box.ack("a", 1000)  # the database has them
    for i in range(5):
        box.append(readings(200, start=10_000 * i))
    assert box.dropped == 0
    assert box.depth("a") == 1000
    assert len(list(box.lines(device="audit-log"))) < 1000


def test_without_sinks_old_history_goes_uncounted_and_audit_stays(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=150_000, check_every_bytes=1)
    box.append(readings(50, device="audit-log"), audit=True)
    for i in range(20):
        box.append(readings(200, start=1000 * i))
    assert box.live_bytes() <= 150_000
    assert box.dropped == 0  # with no database configured, the outbox is a history ring
    assert len(list(box.lines(device="audit-log"))) == 50


def test_bound_holds_drops_oldest_counts_alerts_and_keeps_audit(tmp_path: Path) -> None:
    drops: list[tuple[int, str]] = []
    path = tmp_path / "o.db"
    box = Outbox(
        path,
        max_bytes=150_000,
        sinks=["a"],
        on_drop=lambda n, why: drops.append((n, why)),
        check_every_bytes=1,
    )
    box.append(readings(50, device="audit-log"), audit=True)
    sizes, files, wals = [], [], []
    for i in range(40):
        box.append(readings(200, start=1000 * i))
        sizes.append(box.live_bytes())
        files.append(path.stat().st_size)
        wals.append(Path(f"{path}-wal").stat().st_size)
    assert max(sizes[10:]) <= 150_000  # it stops growing at the bound
    assert len(set(files[15:])) == 1  # and so does the file: freed pages are reused
    assert files[-1] <= 150_000 * 1.2
    assert max(wals[10:]) <= 17 * 4096  # the WAL is checkpointed at ~5 % of the bound
    assert box.dropped > 0
    assert sum(n for n, _ in drops) == box.dropped
    assert "bound" in drops[0][1]
    assert len(list(box.lines(device="audit-log"))) == 50  # never dropped
    newest = box.pending("a", 100_000)[-1]
    assert newest.line.split()[1] == f"entered={39 * 1000 + 199}i"  # the newest are kept
    dropped = box.dropped
    box.close()
    with Outbox(path, sinks=["a"]) as again:  # the counter persists
        assert again.dropped == dropped
        assert again.stats().dropped == dropped


def test_only_audit_left_exceeds_the_bound_rather_than_losing_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=100_000, sinks=["a"], check_every_bytes=1)
    for i in range(10):
        box.append(readings(200, start=1000 * i, device="audit-log"), audit=True)
    assert box.count() == 2000
    assert box.live_bytes() > 100_000
    assert box.dropped == 0
    assert "never dropped" in caplog.text


def test_stats(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", sinks=["a", "b"]) as box:
        box.append(readings(4))
        box.ack("a", 3)
        stats = box.stats()
        assert stats.entries == 4
        assert stats.depth == {"a": 1, "b": 4}
        assert stats.oldest_pending_ns == {"a": T0_NS + 3 * 10**9, "b": T0_NS}
        assert stats.dead_letters == {"a": 0, "b": 0}
        assert stats.live_bytes == box.live_bytes() > 0


def test_read_only_sees_a_live_store_and_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    live = Outbox(path, sinks=["a"])
    live.append(readings(100))
    reader = Outbox(path, read_only=True)  # beside the running gateway's connection
    assert len(list(reader.lines())) == 100
    live.append(readings(50, start=100))  # committed later: the reader sees it too
    assert len(list(reader.lines(measurement="occupancy"))) == 150
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.append(readings(1, start=999))
    reader.close()
    live.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with Outbox(path, read_only=True) as closed_store:  # the gateway stopped: WAL checkpointed
        assert len(list(closed_store.lines())) == 150
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after[path.name] == before[path.name]
    with pytest.raises(FileNotFoundError, match="no such local store"):
        Outbox(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()


# -- one writer per store ----------------------------------------------------------------------


def test_a_second_writer_on_the_same_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    first = Outbox(path, sinks=["a"])
    first.append(readings(3))
    with pytest.raises(OutboxLocked) as refused:
        Outbox(path, sinks=["a"])
    assert isinstance(refused.value, OutboxError)
    assert (refused.value.path, refused.value.pid) == (path, os.getpid())
    assert str(refused.value) == (
        f"{path}: the local store is in use by this process ({os.getpid()}), through another"
        " Outbox: one gateway per store; stop the other gateway first"
    )
    with Outbox(path, read_only=True) as reader:  # a report or a status takes no lock
        assert reader.count() == 3
    first.append(readings(1, start=3))  # the refused open changed nothing for the holder
    first.close()
    first.close()  # closing twice is harmless
    with Outbox(path, sinks=["a"]) as second:  # closed: the store is free
        assert second.depth("a") == 4
    with Outbox(path) as third:  # and free again after the context manager
        assert third.count() == 4


def test_an_unclosed_writer_frees_the_store_when_it_is_collected(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    box = Outbox(path)
    with pytest.raises(OutboxLocked):
        Outbox(path)
    del box  # never closed (CPython frees it here): its lock descriptor is closed with it
    with Outbox(path) as again:
        assert again.count() == 0


HOLDER = """
import sys
from openbranch.edge.telemetry.outbox import Outbox
box = Outbox(sys.argv[1])
print("open", flush=True)
sys.stdin.read()  # hold the store until killed
"""


def test_a_killed_writer_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline() == "open\n"  # it holds the lock from here on
        with pytest.raises(OutboxLocked) as refused:
            Outbox(path)
        assert refused.value.pid == holder.pid
        assert f"in use by process {holder.pid}:" in str(refused.value)
    finally:
        holder.kill()  # SIGKILL: no close(), no atexit, no finalizer
        holder.wait(30)
        holder.stdout.close()
        holder.stdin.close()
    assert lock_path(path).read_text() == f"{holder.pid}\n"  # the dead holder's file stays
    with Outbox(path) as after:  # and does not block: the kernel dropped the lock
        assert after.count() == 0
        assert lock_path(path).read_text() == f"{os.getpid()}\n"


def test_a_store_whose_gateway_is_still_making_it_is_not_ready(tmp_path: Path) -> None:
    """`gateway status` at the moment a gateway starts: the file exists, its tables not yet."""
    path = tmp_path / "outbox.db"
    sqlite3.connect(path).close()  # what SQLite leaves before the schema is written
    with pytest.raises(OutboxNotReady, match="not a local store yet"):
        Outbox(path, read_only=True)


FULL_DISK_BOUND = """
import logging, resource, sys
from openbranch.edge.telemetry.outbox import Outbox
logging.basicConfig(level=logging.ERROR, format="%(message)s", stream=sys.stdout)
path = sys.argv[1]

def rows(start, n):
    stamp = 1_797_494_160_000_000_000
    return [
        (stamp + i, "occupancy", "p", 0, f"occupancy,device=p entered={i}i {stamp + i} " + "x" * 60)
        for i in range(start, start + n)
    ]

with Outbox(path, sinks=["a"], max_bytes=1_500_000, check_every_bytes=10**9) as box:
    for start in range(0, 14_000, 500):  # past the bound, not yet applied
        box.append_rows(rows(start, 500))
box = Outbox(path, sinks=["a"], max_bytes=1_500_000, check_every_bytes=100)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, hard))  # the disk is full
box.append_rows(rows(14_000, 50))  # commits; the bound's deletes then fail
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
print("kept", sum(1 for e in box.lines() if e.time_ns >= 1_797_494_160_000_014_000))
"""


def test_a_bound_the_full_disk_refuses_names_the_disk_and_the_commit_stands(
    tmp_path: Path,
) -> None:
    """Found reproducing the soak's full disk: the bound's delete failed, SQLite rolled its transaction
    back by itself, and the outbox's own ROLLBACK then raised "cannot rollback - no transaction
    is active", which hid the disk's error in the log."""
    lines = run_python(FULL_DISK_BOUND, str(tmp_path / "o.db"))
    assert lines[0].startswith("outbox: the bound could not be applied (disk I/O error)")
    assert lines[-1] == "kept 50"


def _restore(path: Path, image: sqlite3.Connection) -> None:
    """The store's content set back to ``image`` under a live outbox: what a file system or a
    disk that loses written data leaves (SQLite's backup API writes it, another connection)."""
    store = sqlite3.connect(path)
    image.backup(store)
    store.close()


def _image(path: Path) -> sqlite3.Connection:
    image = sqlite3.connect(":memory:")
    store = sqlite3.connect(path)
    store.backup(image)
    store.close()
    return image


def test_commits_the_store_lost_are_committed_again_with_their_seqs_and_state(
    tmp_path: Path,
) -> None:
    """Found by the soak (README, issue 14): the commits just before a failing write were gone
    from the store once the disk took writes again, their seqs given to the next commit. The
    outbox finds it at its next write, commits them again from memory with their seqs and
    state, reports it, and moves the cursors back so every sink is sent them again."""
    path = tmp_path / "o.db"
    lost: list[tuple[int, int, int]] = []
    box = Outbox(path, sinks=["a"], on_lost=lambda *loss: lost.append(loss))
    box.append(readings(3), state={"k": "1"})
    box.ack("a", 3)
    before = _image(path)
    box.append(readings(4, start=3), state={"k": "2"})  # seq 4..7, delivered
    top, _ = box.pending_lines("a", 100)
    box.ack("a", top)
    assert (top, box.depth("a")) == (7, 0)
    _restore(path, before)  # gone: 4..7, their state, and the ack
    assert box.get_state("k") == "1"
    box.append(readings(2, start=50))
    assert lost == [(4, 7, 4)]
    assert box.get_state("k") == "2"
    assert [(e.seq, e.line.split()[1]) for e in box.pending("a", 100)] == [
        (4, "entered=3i"),
        (5, "entered=4i"),
        (6, "entered=5i"),
        (7, "entered=6i"),
        (8, "entered=50i"),
        (9, "entered=51i"),
    ]
    box.append(readings(1, start=60))
    assert lost == [(4, 7, 4)]  # reported once
    box.close()


def test_an_ack_of_entries_the_store_lost_after_they_were_read_stands_for_the_same_entries(
    tmp_path: Path,
) -> None:
    """A drainer read entries, the store lost them, then the drainer acked: they are back with
    the seqs it read them at, so its ack is true of them; the next commit is delivered."""
    path = tmp_path / "o.db"
    lost: list[tuple[int, int, int]] = []
    box = Outbox(path, sinks=["a"], on_lost=lambda *loss: lost.append(loss))
    box.append(readings(2))
    box.ack("a", 2)
    before = _image(path)
    box.append(readings(3, start=2))  # seq 3..5
    top, lines = box.pending_lines("a", 100)
    assert (top, len(lines)) == (5, 3)
    _restore(path, before)
    box.ack("a", top)
    assert lost == [(3, 5, 3)]
    assert [e.line for e in box.lines()][2:] == lines
    box.append(readings(1, start=70))
    assert [(e.seq, e.line.split()[1]) for e in box.pending("a", 100)] == [(6, "entered=70i")]
    box.close()


def test_what_is_older_than_the_record_of_recent_commits_is_reported_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "RECENT_ROWS", 6)
    path = tmp_path / "o.db"
    lost: list[tuple[int, int, int]] = []
    box = Outbox(path, sinks=["a"], on_lost=lambda *loss: lost.append(loss))
    box.append(readings(1))
    before = _image(path)
    for start in (1, 4, 7):
        box.append(readings(3, start=start))  # seq 2..10; the record keeps the last 6 rows
    _restore(path, before)
    box.append(readings(1, start=90))
    assert lost == [(2, 10, 6)]  # 2..4 lost; 5..10 back (the record keeps whole commits)
    assert [e.seq for e in box.pending("a", 100)] == [1, 5, 6, 7, 8, 9, 10, 11]
    box.close()


def test_a_loss_found_in_a_closed_store_is_reported_by_its_next_writer(tmp_path: Path) -> None:
    """The store lost entries while an ack beyond them survived (a gateway stopped before it
    committed again): the next writer reports it at its first commit and delivers that."""
    path = tmp_path / "o.db"
    with Outbox(path, sinks=["a"]) as box:
        box.append(readings(4))
        box.ack("a", 4)
    with sqlite3.connect(path) as db:  # keep the ack, lose entries 3..4 and their counter
        db.execute("DELETE FROM entries WHERE seq > 2")
        db.execute("UPDATE sqlite_sequence SET seq = 2 WHERE name = 'entries'")
    db.close()
    lost: list[tuple[int, int, int]] = []
    with Outbox(path, sinks=["a"], on_lost=lambda *loss: lost.append(loss)) as box:
        box.append(readings(1, start=80))
        assert lost == [(3, 4, 0)]
        assert [(e.seq, e.line.split()[1]) for e in box.pending("a", 100)] == [(3, "entered=80i")]
