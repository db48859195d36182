"""A batch is committed once, whatever fails (found by the soak, issue 14).

- The committer wrote a batch in three transactions (readings, the gateway's own entries,
  audit); when a later one failed, the whole batch was kept and retried, and the readings
  already committed were committed again: doubled in the outbox and in every sink.
- The outbox applied its bound right after a commit, inside ``append``; when that failed
  (a full disk, no descriptor left) the error looked like a failed commit, and the
  committer committed the same rows again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading
from openbranch.edge.runtime.committer import Committer
from openbranch.edge.telemetry.energy import EnergyLedger
from openbranch.edge.telemetry.outbox import Outbox, Row
from tests.support.waiting import until

T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)


def people(i: int) -> Reading:
    return Reading(
        branch="b",
        device="counter",
        measurement=schema.OCCUPANCY,
        fields={"entered": i, "exited": 0},
        time=T0.replace(second=i),
    )


def audit(message: str) -> Reading:
    return Reading(
        branch="b",
        device=schema.GATEWAY_DEVICE,
        measurement=schema.AUDIT,
        fields={"message": message},
        tags={"kind": "mode"},
        time=T0,
    )


class AuditFailsOnce(Outbox):
    """A store that refuses the first commit holding an audit record (a disk that fills up
    between two transactions)."""

    failed = False

    def append_rows(self, rows: Sequence[Row], *, state: Mapping[str, str] | None = None) -> None:
        if any(row[3] for row in rows) and not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("database or disk is full")
        super().append_rows(rows, state=state)


def test_a_batch_whose_audit_part_fails_is_committed_once_on_the_retry(tmp_path: Path) -> None:
    outbox = AuditFailsOnce(tmp_path / "o.db")
    committer = Committer(
        outbox=outbox,
        energy=lambda: EnergyLedger(branch="b", load=outbox.get_state),
        retry_min=0.01,
    )

    async def main() -> None:
        committer.accept([people(1), people(2)])
        committer.record([audit("closed -> staffed")], audit=True)
        await until(lambda: outbox.failed and committer.stats.failing == 0, 10, "the retry")
        await committer.close()

    asyncio.run(main())
    lines = [e.line for e in outbox.lines()]
    outbox.close()
    assert len(lines) == 3, lines  # two readings and the audit record, each once
    assert committer.stats.failures == 1


class BoundFailsOnce(Outbox):
    """A store whose bound cannot be applied once (the delete needs room the disk lacks)."""

    failed = False

    def _enforce_bound(self) -> int:
        if not self.failed:
            self.failed = True
            raise sqlite3.OperationalError("database or disk is full")
        return super()._enforce_bound()


def test_a_bound_that_cannot_be_applied_does_not_fail_the_commit(tmp_path: Path) -> None:
    outbox = BoundFailsOnce(tmp_path / "o.db", max_bytes=100_000, check_every_bytes=10)
    outbox.append([people(1)])  # committed; the bound failed after it: no error here
    assert outbox.failed
    outbox.append([people(2)])  # the bound is applied again
    assert [e.line.split()[1] for e in outbox.lines()] == [
        "entered=1i,exited=0i",
        "entered=2i,exited=0i",
    ]
    outbox.close()
