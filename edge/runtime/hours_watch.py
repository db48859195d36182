"""The hours imported from the library's website, watched while the gateway runs.

Every ``CHECK_EVERY`` seconds of gateway time the watch reads ``hours_imported.yaml`` (written
by ``openbranch hours apply``, beside the config) when it changed, and:

- lays its exceptions into the engine's calendar (``on_hours``; the config's own exceptions and
  closures win, ``edge.core.imported.effective_hours``) and asks for an engine step;
- audits every change of its log that this store has not audited yet (kind ``hours_import``:
  the day, before -> after, from which address, fetched and applied when, by which command);
  the last audited number is kept in the store's state, so a change applied while the gateway
  was stopped is audited at its next start, once;
- raises ``hours_stale`` while the hours were fetched from the website longer ago than
  ``website_hours.stale_after_hours`` (or never, or the file cannot be read: the gateway goes on
  with the hours it has), and clears it when a fresh import is applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from openbranch.edge.core import schema
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.imported import ImportedHours, WebsiteHours, read_imported
from openbranch.edge.core.yamlsource import ConfigError
from openbranch.edge.runtime.journal import Journal

__all__ = ["AUDITED_STATE", "CHECK_EVERY", "HoursWatch", "age_text"]

log = logging.getLogger(__name__)

CHECK_EVERY = 60.0  # seconds of gateway time
AUDITED_STATE = "hours_import:audited"  # outbox state: the last change number audited


def age_text(fetched_at: datetime, now: datetime) -> str:
    """``3 d 4 h`` / ``5 h 12 min`` / ``40 min``: how old the imported hours are."""
    minutes = max(0, int((now - fetched_at).total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


class HoursWatch:
    def __init__(
        self,
        *,
        website: WebsiteHours,
        clock: Clock,
        journal: Journal,
        on_hours: Callable[[ImportedHours | None], None],
        load: Callable[[str], str | None],
        save: Callable[[str, str], None],
    ) -> None:
        self._website = website
        self._clock = clock
        self._journal = journal
        self._on_hours = on_hours
        self._load = load
        self._save = save
        self._seen: tuple[int, int] | None = None  # the file's (mtime_ns, size) last read
        self.imported: ImportedHours | None = None
        self.problem: str | None = None  # why the file could not be read

    def read(self) -> ImportedHours | None:
        """Read the file if it changed since the last read; the imported hours in force."""
        path = self._website.imported_file
        try:
            st = path.stat()
            seen = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = None
        if seen is not None and seen == self._seen:
            return self.imported
        self._seen = seen
        try:
            self.imported = read_imported(path)
            self.problem = None
        except ConfigError as exc:  # keep what was in force; say so
            self.problem = f"{path} cannot be read: {exc}"
            log.warning("%s", self.problem)
        return self.imported

    def check(self) -> None:
        """One look: new hours in force, changes audited, staleness raised or cleared."""
        before = self.imported
        imported = self.read()
        if imported is not before:
            self._on_hours(imported)
        self._audit(imported)
        self._stale(imported)

    def _audit(self, imported: ImportedHours | None) -> None:
        if imported is None:
            return
        raw = self._load(AUDITED_STATE)
        done = int(raw) if raw is not None else 0
        fresh = [c for c in imported.changes if c.seq > done]
        for change in fresh:
            self._journal.audit("hours_import", change.message())
        if fresh:
            self._save(AUDITED_STATE, str(fresh[-1].seq))

    def _stale(self, imported: ImportedHours | None) -> None:
        now = self._clock.now()
        limit = timedelta(hours=self._website.stale_after_hours)
        if imported is None:
            message = self.problem or (
                f"no hours imported from {self._website.url} yet (openbranch hours import, "
                "then hours apply): the gateway runs on its config's hours"
            )
        elif self.problem is not None:
            message = self.problem + "; the gateway runs on the hours it read before"
        elif now - imported.fetched_at > limit:
            fetched = f"{imported.fetched_at:%Y-%m-%d %H:%M} UTC"
            message = (
                f"the hours from {self._website.url} were fetched {fetched}, more than "
                f"{self._website.stale_after_hours} h ago: the gateway "
                "runs on them (openbranch hours import, then hours apply)"
            )
        else:
            if schema.HOURS_STALE in self._journal.active:
                self._journal.alert(
                    schema.HOURS_STALE,
                    f"hours fetched {age_text(imported.fetched_at, now)} ago",
                    severity="info",
                    active=False,
                )
            return
        if self._journal.active.get(schema.HOURS_STALE) != message:
            self._journal.alert(schema.HOURS_STALE, message, severity="warning", active=True)

    async def run(self) -> None:
        while True:
            self.check()
            await self._clock.sleep(CHECK_EVERY)
