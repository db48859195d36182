"""Each sink has its own alert (found by the soak, issue 14): with two sinks, both down, and
one of them back, the alert of the one still down must stay raised. Both drainers raised and
cleared one shared ``sink_down``: the sink that came back cleared the other's, and the
dashboards and `gateway status` said all was well while half the data went nowhere (until
the bound dropped it).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.edge.telemetry.sink import sink_name
from tests.services import Influxd, free_port
from tests.support.waiting import until


def test_a_sink_that_came_back_does_not_clear_the_alert_of_one_still_down(
    tmp_path: Path, influxd: Influxd, influx_db: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "sinks", "name": "Two sinks"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "sinks": [
                {"type": "influxdb_v1", "url": influxd.url, "database": influx_db},
                {"type": "influxdb_v1", "url": dead, "database": influx_db},
            ],
        }
    )
    good, bad = (sink_name(s) for s in config.sinks)
    clock = ScaledClock(start=datetime(2026, 11, 25, 12, tzinfo=UTC), speed=600)
    outbox = open_outbox(config)
    gateway = Gateway(
        config=config, registry=default_registry(), clock=clock, outbox=outbox, extensions=[]
    )
    for drainer in gateway.drainers:
        drainer.backoff_min, drainer.backoff_max = 0.05, 0.2
        drainer.flush_interval = 0.05
    active = gateway.journal.active

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await asyncio.to_thread(influxd.stop)
            await until(  # the health reading every minute (0.1 s) gives them work
                lambda: f"sink_down:{good}" in active and f"sink_down:{bad}" in active,
                20,
                "both sinks down",
            )
            await asyncio.to_thread(influxd.start)
            await until(lambda: f"sink_down:{good}" not in active, 20, "the good sink back")
            assert f"sink_down:{bad}" in active  # still down, still raised
            assert outbox.depth(bad) > 0
        finally:
            stop.set()
            await task

    asyncio.run(main())
    outbox.close()
