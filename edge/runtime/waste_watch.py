"""The waste watch: the gateway's part that judges each closed hour as it is committed.

The committer hands over what it committed (``on_committed``); the ``energy_hourly`` readings
among it go to the ``WasteDetector`` (edge/hours/waste.py). What comes out goes the gateway's
usual ways: the ``closed_hours`` readings and the detector's state with the next commit, the
alerts through the journal (InfluxDB's ``alert`` measurement, the dashboards' alert table,
Home Assistant's alert entities, ``gateway status``). A detector that fails costs only itself:
the commit and the publishing go on, and the failure is an alert of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading
from openbranch.edge.hours.waste import WasteDetector
from openbranch.edge.runtime.journal import Journal

__all__ = ["WASTE_WATCH_FAILED", "WasteWatch"]

log = logging.getLogger(__name__)

#: Alert kind while the detector fails (its hours are then not judged).
WASTE_WATCH_FAILED = f"{schema.CLOSED_HOURS_WASTE}:failed"


class WasteWatch:
    def __init__(
        self,
        *,
        detector: WasteDetector,
        journal: Journal,
        record: Callable[[Sequence[Reading]], None],
        put_state: Callable[[str, str], None],
    ) -> None:
        self.detector = detector
        self._journal = journal
        self._record = record
        self._put_state = put_state
        self._failing = False

    def on_committed(self, readings: Sequence[Reading]) -> None:
        """Judge the closed hours among ``readings`` (committed energy readings)."""
        if not any(r.measurement is schema.ENERGY_HOURLY for r in readings):
            return
        try:
            out = self.detector.observe(readings)
        except Exception as exc:
            log.exception("waste watch: the detector failed")
            if not self._failing:
                self._failing = True
                self._journal.alert(
                    WASTE_WATCH_FAILED,
                    f"closed hours are not judged: {type(exc).__name__}: {exc}",
                    severity="warning",
                    active=True,
                )
            return
        if self._failing:
            self._failing = False
            self._journal.alert(
                WASTE_WATCH_FAILED, "closed hours are judged again", severity="info", active=False
            )
        if out.readings:
            self._record(out.readings)
        for key, value in out.state.items():
            self._put_state(key, value)
        for change in out.alerts:
            self._journal.alert(
                change.kind,
                change.message,
                severity="warning" if change.active else "info",
                active=change.active,
            )
