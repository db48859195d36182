"""The gateway's journal: alerts and audit entries, each logged, shown to listeners (the demo's
timeline) and committed as an audit entry, which the outbox's bound never drops. An alert is
also put on the gateway's own state topic at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from openbranch.edge.core import schema
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.reading import Reading, Value

__all__ = ["Journal", "Listener"]

log = logging.getLogger(__name__)

Listener = Callable[[str, str], None]  # (kind, message)


class Journal:
    def __init__(
        self,
        *,
        branch: str,
        clock: Clock,
        record: Callable[[Sequence[Reading]], None],
        publish_own: Callable[[Sequence[Reading]], None],
        on_active: Callable[[Mapping[str, str]], None] = lambda _: None,
    ) -> None:
        self._branch = branch
        self._clock = clock
        self._record = record  # commits audit entries
        self._publish_own = publish_own
        self._on_active = on_active  # the gateway keeps them for `gateway status`
        self.listeners: list[Listener] = []
        self.raised: list[Callable[[str], None]] = []  # hear each alert kind when raised
        self.active: dict[str, str] = {}  # alert kind -> message, while raised

    def alert(self, kind: str, message: str, *, severity: str, active: bool) -> None:
        """Raise or clear an alert: logged, committed as an audit entry, published."""
        self._tell(f"alert {kind}", f"{'RAISED' if active else 'cleared'}: {message}")
        (log.warning if active else log.info)(
            "alert %s %s: %s", kind, "raised" if active else "cleared", message
        )
        was = self.active.get(kind)
        if active:
            self.active[kind] = message
            for hear in self.raised:
                try:
                    hear(kind)
                except Exception:  # as a listener: it costs only itself (see ``_tell``)
                    log.exception("journal: a hook failed on alert %s", kind)
        else:
            self.active.pop(kind, None)
        if self.active.get(kind) != was:
            self._on_active(self.active)
        reading = self._reading(
            schema.ALERT,
            kind,
            {
                schema.ALERT_MESSAGE.key: message,
                schema.ALERT_SEVERITY.key: severity,
                schema.ALERT_ACTIVE.key: active,
            },
        )
        self._record([reading])
        self._publish_own([reading])

    def audit(self, kind: str, message: str) -> None:
        """Record a decision (mode change, command, announcement); never dropped."""
        log.info("audit %s: %s", kind, message)
        self._tell(kind, message)
        self._record([self._reading(schema.AUDIT, kind, {schema.AUDIT_MESSAGE.key: message})])

    def _tell(self, kind: str, message: str) -> None:
        """Hand an entry to the listeners (the demo's timeline, Home Assistant). One that
        raises is logged and costs only itself: the entry is recorded all the same, and the
        part that journaled it (a drainer, the engine) goes on."""
        for listener in self.listeners:
            try:
                listener(kind, message)
            except Exception:
                log.exception("journal: a listener failed on %s %r", kind, message[:120])

    def _reading(
        self, measurement: schema.Measurement, kind: str, fields: dict[str, Value]
    ) -> Reading:
        return Reading(
            branch=self._branch,
            device=schema.GATEWAY_DEVICE,
            measurement=measurement,
            fields=fields,
            tags={schema.Tag.KIND.value: kind},
            time=self._clock.now(),
        )
