"""The control desk: refusals cost O(1) in the store. A flood of bad control messages gives a
bounded number of audit entries whose counts add up to every refusal (issue 13)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.hours.control import Verifier, sign
from openbranch.edge.runtime.desk import REFUSAL_WINDOW, ControlDesk, Overrides
from openbranch.edge.runtime.journal import Journal
from openbranch.edge.telemetry.outbox import Outbox

KEY = b"k3y-for-tests-only"
NOW = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
TOPIC = "openbranch/b/control"
COUNT = re.compile(r"refused ([\d,]+) more times")


class StepClock:
    """A clock moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.at = start
        self.start = start

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return (self.at - self.start).total_seconds()

    async def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def good(clock_now: datetime, message_id: str) -> bytes:
    body: dict[str, Any] = {
        "id": message_id,
        "issued_at": clock_now.isoformat(),
        "expires_at": (clock_now + timedelta(minutes=5)).isoformat(),
        "action": "cancel_overrides",
        "who": "ops:anna",
        "reason": "test",
    }
    return json.dumps(sign(body, KEY)).encode()


BAD: list[tuple[bytes, bool]] = [
    (json.dumps(sign({"id": "x", "action": "close_now"}, b"another key")).encode(), False),
    (b"{nope", False),
    (b'{"id": "x"}', False),
    (b'{"id": "x"}', True),  # retained
]


def desk_on(store: Outbox, clock: Any) -> tuple[ControlDesk, Journal]:
    journal = Journal(
        branch="b",
        clock=clock,
        record=lambda entries: store.append(entries, audit=True),  # each on its own
        publish_own=lambda _entries: None,
    )
    kept: dict[str, str] = {}
    desk = ControlDesk(
        verifier=Verifier(key=KEY, load=kept.get, save=kept.__setitem__),
        overrides=Overrides(),
        clock=clock,
        journal=journal,
        clear_emergency=lambda who: f"cleared by {who}",
        request_step=lambda: None,
    )
    return desk, journal


def counted(line: str) -> int:
    match = COUNT.search(line)
    return int(match.group(1).replace(",", "")) if match else 1


def test_30000_refusals_are_all_counted_in_a_bounded_audit_within_the_store_bound(
    tmp_path: Path,
) -> None:
    clock = StepClock(NOW)
    with Outbox(tmp_path / "store.db", max_bytes=1_000_000, sinks=("influx",)) as store:
        desk, _journal = desk_on(store, clock)
        for i in range(30_000):
            raw, retained = BAD[i % len(BAD)]
            desk.on_message(TOPIC, raw, retained)
            clock.advance(0.01)  # 300 s: five windows of a minute
        desk.flush()
        rejected = [
            e.line for e in store.lines(measurement="audit") if "kind=command_rejected" in e.line
        ]
        assert sum(counted(line) for line in rejected) == 30_000
        windows = 300 // REFUSAL_WINDOW + 1
        assert len(rejected) <= 2 * len(BAD) * windows  # at once, and the count of the minute
        assert store.live_bytes() < 1_000_000
        assert desk.refused == 30_000
        assert desk.refused_by == {
            "wrong signature": 7_500,
            "not JSON": 7_500,
            "not signed": 7_500,
            "retained": 7_500,
        }


def test_the_first_of_each_reason_is_audited_at_once_with_its_text(tmp_path: Path) -> None:
    clock = StepClock(NOW)
    seen: list[tuple[str, str]] = []
    with Outbox(tmp_path / "store.db") as store:
        desk, journal = desk_on(store, clock)
        journal.listeners.append(lambda kind, message: seen.append((kind, message)))
        for raw, retained in BAD:
            desk.on_message(TOPIC, raw, retained)
    assert [kind for kind, _ in seen] == ["command_rejected"] * len(BAD)
    texts = " | ".join(message for _, message in seen)
    for reason in ("wrong signature", "not JSON", "not signed", "retained"):
        assert reason in texts


def test_accepted_commands_are_audited_one_by_one_in_a_flood(tmp_path: Path) -> None:
    clock = StepClock(NOW)
    with Outbox(tmp_path / "store.db") as store:
        desk, _journal = desk_on(store, clock)
        for i in range(300):
            raw, retained = BAD[0]
            desk.on_message(TOPIC, raw, retained)
            if i % 100 == 50:
                desk.on_message(TOPIC, good(clock.now(), f"g{i}"), False)
        desk.flush()
        audit = [e.line for e in store.lines(measurement="audit")]
    accepted = [line for line in audit if "kind=command_accepted" in line]
    assert len(accepted) == 3
    rejected = [line for line in audit if "kind=command_rejected" in line]
    assert sum(counted(line) for line in rejected) == 300
    assert len(rejected) == 2
    assert desk.refused == 300


def test_a_running_desk_audits_the_count_when_the_minute_is_over() -> None:
    clock = ScaledClock(start=NOW, speed=600)  # a minute in 0.1 s
    lines: list[str] = []

    async def main() -> None:
        counted_in = asyncio.Event()

        def listen(kind: str, message: str) -> None:
            lines.append(message)
            if COUNT.search(message):
                counted_in.set()

        journal = Journal(
            branch="b", clock=clock, record=lambda _e: None, publish_own=lambda _e: None
        )
        journal.listeners.append(listen)
        desk = ControlDesk(
            verifier=Verifier(key=KEY, load=lambda _k: None, save=lambda _k, _v: None),
            overrides=Overrides(),
            clock=clock,
            journal=journal,
            clear_emergency=lambda who: who,
            request_step=lambda: None,
        )
        for _ in range(5):
            desk.on_message(TOPIC, b"{nope", False)
        async with asyncio.timeout(10):
            await counted_in.wait()

    asyncio.run(main())
    assert len(lines) == 2
    assert "not JSON" in lines[0]
    assert "refused 4 more times" in lines[1]
    assert lines[1].endswith(": not JSON")
