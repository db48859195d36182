"""The control desk: signed control messages from the branch's control topic are verified,
audited either way (accepted or refused, with the reason), and applied: an override is held
until it ends, an emergency is cleared, overrides are cancelled. Applying asks the engine
runner for a step; it never runs one itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime

from openbranch.edge.core.clock import Clock
from openbranch.edge.core.schedule import Mode
from openbranch.edge.hours.calendar import Override
from openbranch.edge.hours.control import ControlError, Verifier
from openbranch.edge.runtime.journal import Journal

__all__ = ["OVERRIDES_STATE", "ControlDesk", "Overrides"]

OVERRIDES_STATE = "overrides"  # outbox state key: the overrides in force, as JSON


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

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """A control message: verified, audited either way, applied when valid."""
        if self._verifier is None:
            self._journal.audit("command_rejected", f"{topic}: no control key configured")
            return
        try:
            message = self._verifier.check(payload, retained=retained, now=self._clock.now())
        except ControlError as exc:
            self._journal.audit("command_rejected", f"{topic}: {exc}")
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
