"""A clean stop in the middle of a flood of QoS 1 messages doubles none of them (found by the
soak, issue 14). The stop closed the MQTT session first and committed the last readings
after it: the messages handled in the last moments were committed but never acknowledged,
so the broker sent them again to the next run, and each was accepted twice. The stop now
reads no more, commits, acknowledges, and only then disconnects.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.runtime.gateway import Gateway
from openbranch.edge.telemetry.outbox import Outbox
from tests.conftest import start_or_fail
from tests.services import Mosquitto
from tests.support.waiting import until

TOPIC = "xovis/flood"
TOTAL = 4000


def entered(outbox: Outbox) -> list[int]:
    return [
        int(e.line.split("entered=")[1].split("i")[0])
        for e in outbox.lines(measurement=schema.OCCUPANCY.name)
    ]


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A broker that queues what the gateway has not taken yet, however much (Mosquitto's
    default of 1000 messages would drop some while the gateway restarts)."""
    broker = start_or_fail(lambda: Mosquitto("max_queued_messages 0\n"))
    yield broker
    broker.close()


def test_a_clean_stop_amid_a_flood_doubles_no_message(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "stop", "name": "Clean stop"},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "store": {"path": str(tmp_path / "outbox.db")},
            "devices": [
                {
                    "id": "counter",
                    "profile": "xovis-pc-line-count",
                    "transport": {"type": "mqtt", "topic": TOPIC},
                }
            ],
        }
    )
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood")
    publisher.max_inflight_messages_set(100)
    acked = threading.Semaphore(0)
    publisher.on_publish = lambda *_: acked.release()
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()

    def flood() -> None:
        for i in range(1, TOTAL + 1):
            payload = {"lines": [{"id": 0, "fw": i, "bw": 0}]}
            publisher.publish(TOPIC, json.dumps(payload).encode(), qos=1)
            time.sleep(0.0005)
        for _ in range(TOTAL):
            acked.acquire(timeout=30)

    outbox = Outbox(config.store.path, sinks=[])

    async def run(count: int | None) -> None:
        """A gateway until ``count`` more messages are accepted (None: until every message
        of the flood is in the outbox), then a clean stop."""
        clock = ScaledClock(start=datetime(2026, 11, 25, 12, tzinfo=UTC), speed=1)
        gateway = Gateway(
            config=config, registry=default_registry(), clock=clock, outbox=outbox, extensions=[]
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))

        def done() -> bool:
            if gateway.mqtt is None or not gateway.mqtt.connected:
                return False
            if count is None:
                return len(set(entered(outbox))) >= TOTAL
            return gateway.committer.accepted >= count

        try:
            await until(done, 60, f"connected, {count} accepted")
        finally:
            stop.set()
            await task

    async def main() -> None:
        await run(0)  # the persistent session exists at the broker before the flood
        flooding = asyncio.create_task(asyncio.to_thread(flood))
        for _ in range(3):  # three clean stops in the middle of it
            await run(300)
        await flooding
        await run(None)

    try:
        asyncio.run(main())
    finally:
        publisher.loop_stop()
        publisher.disconnect()
    got = entered(outbox)
    outbox.close()
    assert sorted(set(got)) == list(range(1, TOTAL + 1))
    doubled = sorted(n for n in set(got) if got.count(n) > 1)
    assert doubled == []
