"""A journal listener that raises costs only itself (found by the soak, issue 14): with the
gateway out of file descriptors, Home Assistant's listener could not read the package's
metadata and raised inside ``Journal.alert``; the alert was never recorded and the drainer
that raised it died with it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.reading import Reading
from openbranch.edge.runtime.journal import Journal


def test_a_listener_that_raises_costs_only_itself() -> None:
    recorded: list[Reading] = []
    heard: list[tuple[str, str]] = []
    journal = Journal(
        branch="b",
        clock=ScaledClock(start=datetime(2026, 11, 25, 12, tzinfo=UTC), speed=1),
        record=recorded.extend,
        publish_own=lambda _r: None,
    )

    def broken(kind: str, message: str) -> None:
        raise OSError(24, "Too many open files")

    journal.listeners += [broken, lambda kind, message: heard.append((kind, message))]
    journal.raised.append(lambda kind: broken(kind, ""))  # Home Assistant's alert entities
    journal.alert("sink_down:a", "a: no answer", severity="warning", active=True)
    journal.audit("mode", "closed -> staffed")
    assert [r.measurement for r in recorded] == [schema.ALERT, schema.AUDIT]
    assert journal.active == {"sink_down:a": "a: no answer"}
    assert heard == [("alert sink_down:a", "RAISED: a: no answer"), ("mode", "closed -> staffed")]
