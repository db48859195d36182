"""The committer: commits leave the event loop, and a store that refuses them loses nothing.

The slow and the failing disk are stores whose commit is slowed or refused by a subclass of
the real Outbox (the seam the committer has); the store underneath is a real SQLite file. The
whole gateway against a real full file system is in test_disk_full.py.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading
from openbranch.edge.runtime.committer import Committer
from openbranch.edge.telemetry.energy import EnergyLedger
from openbranch.edge.telemetry.outbox import Outbox, Row

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


class SlowOutbox(Outbox):
    """A disk on which every commit takes ``delay`` seconds."""

    delay = 0.5

    def append_rows(self, rows: Sequence[Row], *, state: Mapping[str, str] | None = None) -> None:
        time.sleep(self.delay)
        super().append_rows(rows, state=state)


class FullOutbox(Outbox):
    """A disk that is full for the next ``refuse`` commits, as SQLite reports it."""

    refuse = 0

    def append_rows(self, rows: Sequence[Row], *, state: Mapping[str, str] | None = None) -> None:
        if self.refuse > 0:
            self.refuse -= 1
            raise sqlite3.OperationalError("database or disk is full")
        super().append_rows(rows, state=state)


def meter(i: int) -> Reading:
    """An energy reading every 10 minutes, the register rising 1 kWh each time."""
    return Reading(
        branch="b",
        device="meter",
        measurement=schema.ENERGY,
        fields={schema.ENERGY_REGISTER.key: 100.0 + i},
        tags={schema.Tag.CARRIER.value: "electricity"},
        time=T0 + timedelta(minutes=10 * i),
    )


def ledger(outbox: Outbox) -> functools.partial[EnergyLedger]:
    return functools.partial(EnergyLedger, branch="b", load=outbox.get_state)


def test_a_slow_disk_does_not_stall_the_loop_and_loses_nothing(tmp_path: Path) -> None:
    outbox = SlowOutbox(tmp_path / "outbox.db", max_bytes=10_000_000)
    committer = Committer(outbox=outbox, energy=ledger(outbox))
    lags: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for i in range(40):  # 2 s of readings every 50 ms, against commits of 0.5 s each
            before = loop.time()
            committer.accept([meter(i)])
            await asyncio.sleep(0.05)
            lags.append(loop.time() - before - 0.05)
        await committer.flush()
        await committer.close()

    asyncio.run(main())
    # The stated bound: the loop is never held for more than 0.1 s (a commit takes 0.5 s).
    assert max(lags) < 0.1, f"the loop waited {max(lags):.3f} s"
    assert committer.accepted == 40
    assert committer.stats.commits < 40  # readings that waited for a commit went together
    energy = list(outbox.lines(measurement=schema.ENERGY.name))
    assert len(energy) == 40
    outbox.close()


def test_a_full_disk_keeps_the_batch_alerts_and_counts_energy_once(tmp_path: Path) -> None:
    outbox = FullOutbox(tmp_path / "outbox.db", max_bytes=10_000_000)
    alerts: list[tuple[bool, str]] = []
    committer = Committer(
        outbox=outbox,
        energy=ledger(outbox),
        on_failure=lambda message, active: alerts.append((active, message)),
        retry_min=0.01,
    )

    async def main() -> None:
        committer.accept([meter(i) for i in range(7)])  # 09:00 .. 10:00
        await committer.flush()
        outbox.refuse = 3
        committer.accept([meter(i) for i in range(7, 13)])  # .. 11:00: closes the 10:00 hour
        await committer.flush()
        await committer.close()

    asyncio.run(main())
    assert [active for active, _ in alerts] == [True, True, True, False]
    assert "database or disk is full" in alerts[0][1]
    assert committer.accepted == 13
    assert committer.stats.failures == 3
    totals = [e.line for e in outbox.lines(measurement=schema.ENERGY.name)]
    assert len(totals) == 13
    assert totals[-1].split("total=")[1].split(" ")[0] == "112.0"  # the register, no more
    hourly = [e.line for e in outbox.lines(measurement=schema.ENERGY_HOURLY.name)]
    consumption = [float(line.split("consumption=")[1].split(",")[0]) for line in hourly]
    assert consumption == [6.0, 6.0]  # 09:00 and 10:00, each counted once
    outbox.close()


def test_sources_are_held_back_while_the_queue_is_full(tmp_path: Path) -> None:
    outbox = FullOutbox(tmp_path / "outbox.db", max_bytes=10_000_000)
    outbox.refuse = 10**9
    pressure: list[bool] = []
    committer = Committer(
        outbox=outbox,
        energy=ledger(outbox),
        on_pressure=pressure.append,
        max_pending=20,
        retry_min=0.01,
    )

    async def main() -> None:
        for i in range(25):
            committer.accept([meter(i)])
        assert committer.holding_back
        outbox.refuse = 0  # the disk has room again
        await committer.flush()
        await committer.close()

    asyncio.run(main())
    assert pressure == [True, False]
    assert committer.accepted == 25
    assert not committer.holding_back
    outbox.close()
