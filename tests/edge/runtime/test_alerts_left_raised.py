"""No alert stays raised for ever (found by the soak, issue 14): an alert a run raised and
never cleared — it was stopped or killed first — showed as raised in the alert table for ever,
since the next run did not know it; and ``outbox_dropped`` was raised at every drop and
never cleared at all. Now the next run clears what the last one left raised (the part that
sees the fault raises it again if it is still true), and ``outbox_dropped`` is cleared once
every sink has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.runtime.gateway import UNRECOVERED, Gateway, open_outbox, store_lost_message
from openbranch.edge.telemetry.outbox import Outbox
from tests.services import Influxd
from tests.support.waiting import until


def alerts(outbox: Outbox, kind: str) -> list[str]:
    return [
        e.line for e in outbox.lines(measurement=schema.ALERT.name) if f"kind={kind} " in e.line
    ]


def test_an_alert_left_raised_by_a_stopped_run_is_cleared_by_the_next(tmp_path: Path) -> None:
    config = GatewayConfig.model_validate(
        {"branch": {"id": "left", "name": "Left raised"}, "store": {"path": str(tmp_path / "o.db")}}
    )
    outbox = open_outbox(config)
    clock = ScaledClock(start=datetime(2026, 11, 25, 12, tzinfo=UTC), speed=60)

    async def run(during: object) -> Gateway:
        gateway = Gateway(
            config=config, registry=default_registry(), clock=clock, outbox=outbox, extensions=[]
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        # its tasks started: the alerts a previous run left are cleared by then
        await until(lambda: "health" in gateway.tasks.states(), what="the gateway running")
        if callable(during):
            during(gateway)
        stop.set()  # the stop commits what was raised
        await task
        return gateway

    def fail(gateway: Gateway) -> None:
        gateway.journal.alert(
            "device_down:meter", "meter stopped answering", severity="warning", active=True
        )

    asyncio.run(run(fail))  # stopped with device_down:meter raised
    second = asyncio.run(run(None))
    assert "device_down:meter" not in second.journal.active
    lines = alerts(outbox, "device_down:meter")
    assert len(lines) == 2 and "active=true" in lines[0] and "active=false" in lines[1]
    assert "cleared at the start: the previous run left it raised" in lines[1]
    asyncio.run(run(None))  # nothing left to clear: no third entry
    assert len(alerts(outbox, "device_down:meter")) == 2
    outbox.close()


def sink_gateway(path: Path, influxd: Influxd, database: str) -> tuple[Outbox, Gateway]:
    """A gateway with one influxd sink on the store ``path``, on a clock 600x real time."""
    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "sunk", "name": "Sunk"},
            "store": {"path": str(path)},
            "sinks": [{"type": "influxdb_v1", "url": influxd.url, "database": database}],
        }
    )
    outbox = open_outbox(config)
    clock = ScaledClock(start=datetime(2026, 11, 25, 12, tzinfo=UTC), speed=600)
    gateway = Gateway(
        config=config, registry=default_registry(), clock=clock, outbox=outbox, extensions=[]
    )
    return outbox, gateway


def run_while(gateway: Gateway, during: Callable[[], Awaitable[None]]) -> None:
    """Run the gateway while ``during`` runs; then stop it."""

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await during()
        finally:
            stop.set()
            await task

    asyncio.run(main())


def test_outbox_dropped_is_cleared_once_every_sink_has_caught_up(
    tmp_path: Path, influxd: Influxd, influx_db: str
) -> None:
    outbox, gateway = sink_gateway(tmp_path / "o.db", influxd, influx_db)
    kind = schema.OUTBOX_DROPPED

    async def drop() -> None:
        gateway.journal.alert(kind, "dropped 12 oldest readings", severity="critical", active=True)
        await until(lambda: kind not in gateway.journal.active, 20, "outbox_dropped cleared")

    run_while(gateway, drop)
    lines = alerts(outbox, kind)
    outbox.close()
    assert len(lines) == 2 and "every sink has caught up" in lines[1]


def test_entries_the_store_lost_raise_store_lost_until_every_sink_has_caught_up(
    tmp_path: Path, influxd: Influxd, influx_db: str
) -> None:
    """The store set back under a running gateway (what a file system that loses written data
    leaves): the gateway's next commit finds its entries gone and raises ``store_lost``; it is
    cleared once the sink has what the store holds."""
    path = tmp_path / "o.db"
    outbox, gateway = sink_gateway(path, influxd, influx_db)
    image = sqlite3.connect(":memory:")
    with contextlib.closing(sqlite3.connect(path)) as store:
        store.backup(image)  # the store before the gateway committed anything
    kind = schema.STORE_LOST

    async def lose() -> None:
        await until(lambda: outbox.count() > 0, 20, "the gateway's first commit")
        with contextlib.closing(sqlite3.connect(path)) as store:
            image.backup(store)  # everything it committed: gone
        await until(lambda: len(alerts(outbox, kind)) == 2, 20, "store_lost raised, cleared")

    run_while(gateway, lose)
    lines = alerts(outbox, kind)
    outbox.close()
    assert "active=true" in lines[0] and "the local store lost entries 1.." in lines[0]
    assert "committed again from memory" in lines[0]
    assert "active=false" in lines[1] and "every sink has caught up" in lines[1]


def test_the_store_lost_message_says_lost_only_of_entries_not_committed_again() -> None:
    """The soak flags an unrecovered loss by ``UNRECOVERED`` in the message (decision 115)."""
    whole = store_lost_message(7, 11, 5)
    part = store_lost_message(7, 11, 3)
    assert UNRECOVERED not in whole and "all 5 committed again from memory" in whole
    assert f"the other 2 {UNRECOVERED} (the sinks may hold them)" in part
    assert "entries 7..11" in part and "3 of 5 committed again" in part
