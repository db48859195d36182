"""The entry desk's own logic (edge/runtime/entry.py): the offline policy both ways, lockout
per reader, a reader flood, the branch's answer before any lookup.

Stand-ins, and why: the library system here is a table in the test that can be switched off
(the SIP2 wire, pysip2's ACS and the gateway's client meet in test_entry_flow.py), the
readers and the door record what they are told (a real reader and lock on Mosquitto are in
test_entry_flow.py too). The journal, the policy, the desk and the allow-list (sqlite, keyed
pseudonyms) are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.admission import (
    EntryConfig,
    LibrarySystemUnavailable,
    Patron,
    Presentation,
    ReaderMessage,
    Reason,
)
from openbranch.edge.core.clock import Clock, ScaledClock
from openbranch.edge.core.command import Command
from openbranch.edge.core.reading import Reading, Value
from openbranch.edge.core.schedule import Mode
from openbranch.edge.runtime.allowlist import AllowList
from openbranch.edge.runtime.entry import BranchView, EntryDesk, Lockout
from openbranch.edge.runtime.journal import Journal
from tests.edge.runtime.test_desk import StepClock

NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
CARDS = {"1001": "1234", "1002": "4321"}


class Library:
    """The library system's answers from ``CARDS``; ``up = False``: it does not answer."""

    def __init__(self) -> None:
        self.up = True
        self.asked = 0

    async def lookup(self, card: str, pin: str | None) -> Patron:
        self.asked += 1
        if not self.up:
            raise LibrarySystemUnavailable("refused: connection refused")
        known = card in CARDS
        return Patron(valid=known, pin_ok=None if pin is None else CARDS.get(card) == pin)

    async def close(self) -> None:
        return None


class Reader:
    def __init__(self) -> None:
        self.shown: list[ReaderMessage] = []

    async def presentations(self, deliver: Callable[[Presentation], None]) -> None:
        await asyncio.Event().wait()

    def show(self, message: ReaderMessage) -> None:
        self.shown.append(message)


class Door:
    """Records the commands the desk sends (the door's points)."""

    device_id = "door"

    def __init__(self) -> None:
        self.commands: list[Command] = []

    async def write(self, command: Command) -> Value:
        self.commands.append(command)
        return command.value


def desk(
    *,
    mode: Mode = Mode.SELF_SERVICE,
    entry: dict[str, Any] | None = None,
    library: Library | None = None,
    allow: AllowList | None = None,
    clock: Clock | None = None,
    load: Callable[[str], str | None] = lambda _key: None,
    save: Callable[[str, str], None] = lambda _key, _value: None,
) -> tuple[EntryDesk, Journal, list[Reading], Door]:
    clock = clock or StepClock(NOW)
    written: list[Reading] = []
    journal = Journal(branch="b", clock=clock, record=written.extend, publish_own=lambda _r: None)
    door = Door()
    config = EntryConfig.model_validate(
        {
            "readers": [
                {"reader": "r1", "door": "door", "unlock_point": "lock_relay"},
                {"reader": "r2", "door": "door", "unlock_point": "lock_relay"},
            ],
            **(entry or {}),
        }
    )
    view = BranchView(mode, 3, NOW + timedelta(hours=3), date(2026, 12, 2))
    entry_desk = EntryDesk(
        branch="b",
        config=config,
        readers={"r1": Reader(), "r2": Reader()},
        doors={"door": door},  # type: ignore[dict-item]  # writes only
        library=library or Library(),
        allow_list=allow,
        pseudonym=lambda card: f"p{card[-2:]}",
        view=lambda: view,
        clock=clock,
        journal=journal,
        record=written.extend,
        load=load,
        save=save,
    )
    return entry_desk, journal, written, door


def run(entry: EntryDesk, *shown: tuple[str, str, str | None]) -> list[Reason]:
    async def main() -> list[Reason]:
        reasons = []
        for reader, card, pin in shown:
            decision = await entry.handle(Presentation(reader=reader, card=card, pin=pin))
            reasons.append(decision.reason)
        await entry.close()
        return reasons

    return asyncio.run(main())


def allow_list(tmp_path: Path) -> AllowList:
    return AllowList(tmp_path / "allowlist.db", key=b"k" * 32, days=14, clock=StepClock(NOW))


def test_offline_refuse_all_is_the_default(tmp_path: Path) -> None:
    library, allow = Library(), allow_list(tmp_path)
    entry, journal, _, door = desk(library=library, allow=allow)
    assert run(entry, ("r1", "1001", "1234")) == [Reason.ADMITTED]
    library.up = False
    assert run(entry, ("r1", "1001", "1234")) == [Reason.OFFLINE]
    assert schema.LIBRARY_SYSTEM_DOWN in journal.active
    assert "offline policy: refuse_all" in journal.active[schema.LIBRARY_SYSTEM_DOWN]
    assert [c.value for c in door.commands] == [True, False]  # one pulse, the first card's


def test_offline_recently_admitted_admits_only_cards_admitted_online(tmp_path: Path) -> None:
    library, allow = Library(), allow_list(tmp_path)
    entry, journal, _, door = desk(
        library=library, allow=allow, entry={"offline": {"policy": "recently_admitted"}}
    )
    assert run(entry, ("r1", "1001", "1234")) == [Reason.ADMITTED]
    library.up = False
    assert run(entry, ("r1", "1001", None), ("r1", "1002", "4321")) == [
        Reason.OFFLINE_ADMITTED,
        Reason.OFFLINE,
    ]
    assert journal.active[schema.LIBRARY_SYSTEM_DOWN].endswith("recently_admitted")
    library.up = True
    assert run(entry, ("r1", "1002", "4321")) == [Reason.ADMITTED]
    assert schema.LIBRARY_SYSTEM_DOWN not in journal.active
    assert [c.value for c in door.commands] == [True, False] * 3
    CARDS.pop("1002")  # the card is withdrawn: refused online, forgotten for offline
    try:
        assert run(entry, ("r1", "1002", "4321")) == [Reason.NOT_A_PATRON]
    finally:
        CARDS["1002"] = "4321"
    library.up = False
    assert run(entry, ("r1", "1002", None), ("r1", "1001", None)) == [
        Reason.OFFLINE,
        Reason.OFFLINE_ADMITTED,
    ]
    assert b"1001" not in b"".join(p.read_bytes() for p in tmp_path.glob("allowlist.db*"))


def test_a_reader_is_locked_after_wrong_pins_and_unknown_cards() -> None:
    library = Library()
    entry, journal, _, _ = desk(library=library, entry={"lockout": {"reader_attempts": 4}})
    guesses = [("r1", "9000", "0000"), ("r1", "9001", "0000")]  # card numbers tried
    guesses += [("r1", "1001", "0000"), ("r1", "1002", "0000")]  # then PINs, two cards
    assert run(entry, *guesses) == [Reason.NOT_A_PATRON] * 2 + [Reason.WRONG_PIN] * 2
    assert "entry_lockout:r1" in journal.active
    asked = library.asked
    assert run(entry, ("r1", "1001", "1234"), ("r2", "1001", "1234")) == [
        Reason.LOCKED_OUT,
        Reason.ADMITTED,  # the other reader is not locked, nor is the card (1 of 3)
    ]
    assert library.asked == asked + 1


def test_a_locked_reader_takes_cards_again_after_the_lock() -> None:
    clock = ScaledClock(start=NOW, speed=1000)  # 1000 s of locks pass in a real second
    entry, journal, _, _ = desk(
        entry={
            "lockout": {"reader_attempts": 2, "lock_s": 60},
            "tailgating": {"window_s": 5},  # the desk's tick: 5 s of its clock
        },
        clock=clock,
    )
    cleared = asyncio.Event()
    journal.listeners.append(
        lambda kind, text: (
            cleared.set()
            if kind == "alert entry_lockout:r1" and text.startswith("cleared")
            else None
        )
    )

    async def main() -> Reason:
        task = asyncio.create_task(entry.run())
        for pin in ("0000", "0001"):
            await entry.handle(Presentation(reader="r1", card="1001", pin=pin))
        assert "entry_lockout:r1" in journal.active
        async with asyncio.timeout(10):
            await cleared.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return (await entry.handle(Presentation(reader="r1", card="1001", pin="1234"))).reason

    assert asyncio.run(main()) == Reason.ADMITTED


def test_a_card_is_locked_after_three_wrong_pins_and_free_again_after_the_lock() -> None:
    lock = Lockout(limit=3, within=60, lock=300)
    assert [lock.wrong("c", t) for t in (0, 10, 20)] == [False, False, True]
    assert lock.locked("c", 299)
    assert not lock.locked("c", 320)
    assert [lock.wrong("d", t) for t in (0, 61, 122)] == [False, False, False]  # spread out


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (Mode.CLOSED, Reason.CLOSED),
        (Mode.STAFFED, Reason.STAFFED),
        (Mode.EMERGENCY, Reason.EMERGENCY),
    ],
)
def test_the_branch_answers_before_the_library_system(mode: Mode, reason: Reason) -> None:
    library = Library()
    entry, _, _, door = desk(mode=mode, library=library)
    assert run(entry, ("r1", "1001", "1234")) == [reason]
    assert library.asked == 0
    assert door.commands == []  # staffed: the door is free already


def test_a_reader_flood_is_bounded_counted_and_alerted() -> None:
    entry, journal, _, _ = desk(
        entry={"queue": 8, "tailgating": {"window_s": 0.2}},  # the desk's tick: 0.2 s
        clock=ScaledClock(start=NOW, speed=1),
    )

    async def main() -> None:
        cleared = asyncio.Event()
        journal.listeners.append(
            lambda kind, text: (
                cleared.set()
                if kind == f"alert {schema.ENTRY_FLOOD}" and text.startswith("cleared")
                else None
            )
        )
        for i in range(1000):  # one reader floods, the other presents once
            entry.deliver(Presentation(reader="r1", card=f"{i:04d}", pin="0000"))
        entry.deliver(Presentation(reader="r2", card="1001", pin="1234"))
        assert entry.dropped == 1000 - 4  # r1's share of the queue is 4
        assert schema.ENTRY_FLOOD in journal.active
        task = asyncio.create_task(entry.run())
        async with asyncio.timeout(10):
            await cleared.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert [r.value for _, d in entry.decisions for r in [d.reason]][-1] == "admitted"
    assert len(entry.decisions) == 5


def test_the_numbers_count_each_decision_in_its_hour_and_mode() -> None:
    entry, _, written, _ = desk()
    run(entry, ("r1", "1001", "1234"), ("r1", "1001", "9999"), ("r2", "1002", "4321"))
    counts = [r for r in written if r.measurement is schema.ADMISSION]
    assert [(r.fields["admitted"], r.fields["refused"]) for r in counts] == [(1, 0), (1, 1), (2, 1)]
    assert {r.time for r in counts} == {NOW.replace(minute=0)}
    assert {r.tags["mode"] for r in counts} == {"self_service"}


def test_the_counts_of_the_hour_go_on_after_a_restart() -> None:
    state: dict[str, str] = {}
    first, _, _, _ = desk(save=state.__setitem__)
    run(first, ("r1", "1001", "1234"), ("r1", "1002", "0000"))
    again, _, written, _ = desk(load=state.get)
    run(again, ("r1", "1002", "4321"))
    (point,) = [r for r in written if r.measurement is schema.ADMISSION]
    assert (point.fields["admitted"], point.fields["refused"]) == (2, 1)


def _audit(written: Sequence[Reading]) -> list[str]:
    return [str(r.fields["message"]) for r in written if r.measurement is schema.AUDIT]


def test_the_audit_holds_the_pseudonym_never_the_card() -> None:
    entry, _, written, _ = desk()
    run(entry, ("r1", "1001", "1234"))
    assert "r1: card p01 admitted (admitted)" in _audit(written)
    assert not any("1001" in line or "1234" in line for line in _audit(written))
