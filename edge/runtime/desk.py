"""The control desk: signed control messages from the branch's control topic are verified,
audited, and applied: an override is held until it ends, an emergency is cleared, overrides
are cancelled. Applying asks the engine runner for a step; it never runs one itself.

Every accepted command is audited on its own. Every refusal is *counted* in the audit, at a
cost that does not grow with the number of messages (anyone who may publish on the control
topic can send them by the thousand, issue 13): the first refusal of each kind
(``ControlError.kind``) is audited at once with its reason, and the others of that kind within
``REFUSAL_WINDOW`` seconds after it become one entry with their count when the window is over
("refused 1,234 more times in the minute from 19:00:00 UTC: wrong signature"). So at most two
entries per kind per minute, and the counts of the entries add up to every refusal. A window
is closed by the next control message after it, by the desk's own timer (on the clock, while
the event loop runs), or by ``flush()``. ``refused`` and ``refused_by`` count them all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from openbranch.edge.core.clock import Clock
from openbranch.edge.core.schedule import Mode
from openbranch.edge.hours.calendar import Override
from openbranch.edge.hours.control import ControlError, Verifier
from openbranch.edge.runtime.journal import Journal

__all__ = ["NO_KEY", "OVERRIDES_STATE", "REFUSAL_WINDOW", "ControlDesk", "Overrides"]

OVERRIDES_STATE = "overrides"  # outbox state key: the overrides in force, as JSON
REFUSAL_WINDOW = 60  # seconds (clock time) over which refusals of one kind are counted
NO_KEY = "no control key"  # the refusal kind of a gateway without a control key


class Overrides:
    """The overrides people set, until they end; kept in the outbox's state (``save``) with
    every change, so a restart, clean or killed, goes on with them (``load`` at start)."""

    def __init__(
        self,
        *,
        load: Callable[[str], str | None] = lambda _key: None,
        save: Callable[[str, str], None] = lambda _key, _value: None,
    ) -> None:
        self._save = save
        raw = load(OVERRIDES_STATE)
        self._items: list[Override] = [] if raw is None else [_override(o) for o in json.loads(raw)]

    def add(self, override: Override) -> None:
        self._items.append(override)
        self._store()

    def clear(self) -> None:
        self._items.clear()
        self._store()

    def active(self, now: datetime) -> list[Override]:
        """The overrides still in force at ``now`` (ended ones are forgotten)."""
        live = [o for o in self._items if o.end > now]
        if len(live) != len(self._items):
            self._items = live
            self._store()
        return list(live)

    def _store(self) -> None:
        self._save(
            OVERRIDES_STATE,
            json.dumps(
                [
                    {
                        "mode": o.mode.value,
                        "start": o.start.isoformat(),
                        "end": o.end.isoformat(),
                        "reason": o.reason,
                    }
                    for o in self._items
                ]
            ),
        )


def _override(raw: Mapping[str, str]) -> Override:
    return Override(
        mode=Mode(raw["mode"]),
        start=datetime.fromisoformat(raw["start"]),
        end=datetime.fromisoformat(raw["end"]),
        reason=raw["reason"],
    )


@dataclass(slots=True)
class _Window:
    """Refusals of one kind since the one audited at once."""

    opened: float  # the clock's monotonic reading
    since: datetime  # the wall clock then, for the entry's text
    topic: str
    more: int = 0  # refusals after the first, not audited yet


class ControlDesk:
    def __init__(
        self,
        *,
        verifier: Verifier | None,
        overrides: Overrides,
        clock: Clock,
        journal: Journal,
        clear_emergency: Callable[[str], str],
        request_step: Callable[[], None],
    ) -> None:
        self._verifier = verifier
        self._clock = clock
        self._journal = journal
        self._clear_emergency = clear_emergency
        self._request_step = request_step
        self.overrides = overrides
        self.refused = 0  # every refusal since the start
        self.refused_by: dict[str, int] = {}  # per kind
        self._windows: dict[str, _Window] = {}
        self._timer: asyncio.Task[None] | None = None

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """A control message: verified, counted in the audit when refused, audited on its own
        and applied when valid."""
        self._close_windows(self._clock.monotonic())
        if self._verifier is None:
            self._refuse(topic, NO_KEY, f"{topic}: no control key configured")
            return
        try:
            message = self._verifier.check(payload, retained=retained, now=self._clock.now())
        except ControlError as exc:
            self._refuse(topic, exc.kind, f"{topic}: {exc}")
            return
        if message.override is not None:
            self.overrides.add(message.override)
        elif message.action == "clear_emergency":
            self._journal.audit("engine", self._clear_emergency(message.who))
        elif message.action == "cancel_overrides":
            self.overrides.clear()
        until = f" until {message.override.end.isoformat()}" if message.override else ""
        mode = f" {message.override.mode}" if message.override else ""
        self._journal.audit(
            "command_accepted",
            f"{message.action}{mode}{until} by {message.who} ({message.reason}), id {message.id}",
        )
        self._request_step()

    def flush(self) -> None:
        """Audit the count of every open window now (at a stop, and in tests)."""
        self._close_windows(None)

    def _refuse(self, topic: str, kind: str, text: str) -> None:
        self.refused += 1
        self.refused_by[kind] = self.refused_by.get(kind, 0) + 1
        window = self._windows.get(kind)
        if window is not None:
            window.more += 1
            self._start_timer()
            return
        self._windows[kind] = _Window(self._clock.monotonic(), self._clock.now(), topic)
        self._journal.audit("command_rejected", text)

    def _close_windows(self, now: float | None) -> None:
        """Audit the counts of the windows that are over at ``now`` (None: all of them)."""
        for kind, window in list(self._windows.items()):
            if now is not None and now < window.opened + REFUSAL_WINDOW:
                continue
            del self._windows[kind]
            if window.more:
                self._journal.audit(
                    "command_rejected",
                    f"{window.topic}: refused {window.more:,} more times in the minute from "
                    f"{window.since:%H:%M:%S} UTC: {kind}",
                )

    def _start_timer(self) -> None:
        """Close the windows when they are over, while the event loop runs (a sync caller,
        such as a test, calls ``flush``)."""
        if self._timer is not None and not self._timer.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.create_task(self._close_in_time(), name="control-desk-refusals")

    async def _close_in_time(self) -> None:
        try:
            while any(w.more for w in self._windows.values()):
                due = min(w.opened for w in self._windows.values() if w.more) + REFUSAL_WINDOW
                await self._clock.sleep(max(0.0, due - self._clock.monotonic()))
                self._close_windows(self._clock.monotonic())
        except asyncio.CancelledError:
            self.flush()  # the loop is ending: count what is open now
            raise
