"""The outbox: commit first, per-sink cursors, dead letters, state, the bound, restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge import schema
from edge.outbox import Outbox
from edge.reading import Reading

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


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
    assert first[0].line == "occupancy,branch=b,device=meter entered=0i 1795521600000000000"
    box.ack("a", first[-1].seq)
    assert box.depth("a") == 6
    assert box.depth("b") == 10
    box.close()
    again = Outbox(path, sinks=["a", "b"])
    assert [e.seq for e in again.pending("a", 100)] == list(range(5, 11))
    assert again.depth("b") == 10
    again.close()


def test_dead_letters_persist_and_count_as_handled(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, sinks=["a"])
    box.append(readings(3))
    bad = box.pending("a", 3)[1]
    box.dead_letter("a", bad, "field type conflict")
    box.ack("a", 3)
    box.close()
    again = Outbox(path, sinks=["a"])
    assert again.dead_letters("a") == [("a", 2, bad.line, "field type conflict")]
    assert again.stats().dead_letters == {"a": 1}
    assert again.depth("a") == 0
    again.close()


def test_state_commits_with_its_readings(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append(readings(1), state={"energy:meter": '{"total": 5}'})
    assert box.get_state("energy:meter") == '{"total": 5}'
    assert box.get_state("missing") is None


def test_history_query_by_time_and_device(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.append(readings(5, device="x") + readings(5, device="y"))
    start = int((T0 + timedelta(seconds=1)).timestamp()) * 10**9
    end = int((T0 + timedelta(seconds=3)).timestamp()) * 10**9
    got = list(box.lines(device="x", start_ns=start, end_ns=end))
    assert [e.line.split()[1] for e in got] == ["entered=1i", "entered=2i"]


def test_bound_drops_delivered_history_before_undelivered(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=300_000, sinks=["a"], check_every_bytes=1)
    box.append(readings(1500))  # ~230 kB
    box.ack("a", 1500)  # all of it delivered: it is history now
    for i in range(1, 6):
        box.append(readings(200, start=10_000 * i))
    assert box.live_bytes() <= 300_000
    assert box.count() < 2500  # history went
    assert box.dropped == 0  # and only history
    assert box.depth("a") == 5 * 200


def test_bound_holds_drops_oldest_counts_alerts_and_keeps_audit(tmp_path: Path) -> None:
    drops: list[tuple[int, str]] = []
    box = Outbox(
        tmp_path / "o.db",
        max_bytes=150_000,
        sinks=["a"],
        on_drop=lambda n, why: drops.append((n, why)),
        check_every_bytes=1,
    )
    box.append(readings(50, device="audit-log"), audit=True)
    sizes = []
    for i in range(40):
        box.append(readings(200, start=1000 * i))
        sizes.append(box.live_bytes())
    assert max(sizes[10:]) <= 150_000  # it stops growing at the bound
    assert box.dropped > 0
    assert sum(n for n, _ in drops) == box.dropped
    assert "bound" in drops[0][1]
    audit = list(box.lines(device="audit-log"))
    assert len(audit) == 50  # never dropped
    newest = box.pending("a", 100_000)[-1]
    assert newest.line.split()[1] == f"entered={39 * 1000 + 199}i"  # the newest are kept
