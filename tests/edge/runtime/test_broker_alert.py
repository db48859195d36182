"""A broker that went away is an alert (found by the soak, issue 14): with Mosquitto stopped,
no MQTT device is heard and no state is published, and nothing told a person so.

A gateway runs on an accelerated clock against a real Mosquitto; the broker is stopped and
started again; ``mqtt_down`` must be raised (and kept in the status file that `gateway
status` reads) while it is away, and cleared once the session is connected again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.edge.runtime.statusfile import read_status
from tests.services import Mosquitto
from tests.support.waiting import until


def test_a_broker_that_went_away_is_an_alert_until_it_is_back(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "broker", "name": "Broker alert"},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "keepalive": "2s"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "devices": [
                {
                    "id": "counter",
                    "profile": "xovis-pc-line-count",
                    "transport": {"type": "mqtt", "topic": "xovis/counter"},
                }
            ],
        }
    )
    clock = ScaledClock(start=datetime(2026, 11, 25, 12, tzinfo=UTC), speed=120)
    outbox = open_outbox(config)
    gateway = Gateway(
        config=config, registry=default_registry(), clock=clock, outbox=outbox, extensions=[]
    )
    kind = schema.MQTT_DOWN

    def shown() -> bool:
        status = read_status(outbox.path)
        return status is not None and kind in status["alerts"]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await until(lambda: gateway.mqtt is not None and gateway.mqtt.connected, 10, "up")
            await asyncio.to_thread(mosquitto.stop)
            await until(lambda: kind in gateway.journal.active, 10, "mqtt_down raised")
            assert shown()  # what `gateway status` prints
            await asyncio.to_thread(mosquitto.start)
            await until(lambda: kind not in gateway.journal.active, 30, "mqtt_down cleared")
            assert not shown()
        finally:
            stop.set()
            await task

    asyncio.run(main())
    alerts = [
        e.line for e in outbox.lines(measurement=schema.ALERT.name) if f"kind={kind}" in e.line
    ]
    outbox.close()
    assert len(alerts) == 2, alerts  # raised once, cleared once
    assert "active=true" in alerts[0] and "active=false" in alerts[1]
