"""The committer: the one path from accepted readings to the outbox.

Device readings wait at most ``COMMIT_EVERY`` seconds (or until ``COMMIT_MAX`` are queued) and
are committed in one transaction with their meter totals, closed hours and the energy
accounts' state; only then are they accepted, and only then are their states published. The
gateway's own entries (alerts, audit, branch mode, health) are committed at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from openbranch.edge.core.reading import Reading
from openbranch.edge.telemetry.energy import EnergyLedger
from openbranch.edge.telemetry.outbox import Outbox

__all__ = ["COMMIT_EVERY", "COMMIT_MAX", "Committer"]

COMMIT_EVERY = 0.05  # real seconds a reading may wait for its commit
COMMIT_MAX = 5000  # readings that trigger a commit at once


class Committer:
    def __init__(
        self,
        *,
        outbox: Outbox,
        energy: EnergyLedger,
        on_committed: Callable[[Sequence[Reading]], None] = lambda _: None,
    ) -> None:
        self._outbox = outbox
        self._energy = energy
        self._on_committed = on_committed
        self._pending: list[Reading] = []
        self._timer: asyncio.TimerHandle | None = None
        self.accepted = 0  # device readings committed

    def accept(self, readings: Sequence[Reading]) -> None:
        """Queue device readings for the next commit (at most ``COMMIT_EVERY`` away)."""
        self._pending.extend(readings)
        if len(self._pending) >= COMMIT_MAX:
            self.commit()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(COMMIT_EVERY, self.commit)

    def commit(self) -> None:
        """Commit queued readings, with meter totals, closed hours and the accounts' state, in
        one transaction; from then on they are accepted and never silently dropped."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        readings, self._pending = self._pending, []
        if not readings:
            return
        out, state = self._energy.process(readings)
        self._outbox.append(out, state=state)
        self.accepted += len(readings)
        self._on_committed(out)

    def record(self, readings: Sequence[Reading], *, audit: bool = False) -> None:
        """Commit the gateway's own entries now; ``audit`` ones are never dropped."""
        self._outbox.append(readings, audit=audit)
