"""The demo's in-process broker (amqtt): paho clients publish and subscribe through it, and
the gateway's session, asking for v5 first, settles on 3.1.1 there."""

from __future__ import annotations

import asyncio

from paho.mqtt.enums import MQTTProtocolVersion

from openbranch.edge.core.config import MqttConfig
from openbranch.edge.demo.broker import EmbeddedBroker
from openbranch.edge.runtime.mqtt import MqttSession
from tests.mqttwatch import Watcher
from tests.support.waiting import until


def test_paho_publishes_and_subscribes_through_the_embedded_broker() -> None:
    async def main() -> None:
        async with EmbeddedBroker() as broker:
            assert broker.host == "127.0.0.1" and broker.port > 0
            watcher = await asyncio.to_thread(Watcher, broker.host, broker.port, "demo/#")
            publisher = await asyncio.to_thread(Watcher, broker.host, broker.port, "unused")
            await asyncio.to_thread(publisher.publish, "demo/counter", b'{"in": 3}')
            seen = await asyncio.to_thread(watcher.wait_for, bool)
            assert [(m.topic, m.payload) for m in seen] == [("demo/counter", b'{"in": 3}')]
            for client in (watcher, publisher):
                await asyncio.to_thread(client.close)

    asyncio.run(main())


def test_session_falls_back_to_311_on_the_embedded_broker() -> None:
    async def main() -> None:
        async with EmbeddedBroker() as broker:
            session = MqttSession(MqttConfig(host=broker.host, port=broker.port), branch="demo")
            assert await session.connect(wait=1.0)
            assert session.protocol is MQTTProtocolVersion.MQTTv311
            got: list[bytes] = []
            session.subscribe("demo/#", lambda _t, p, _r: got.append(p))
            assert await session.wait_subscribed()
            publisher = await asyncio.to_thread(Watcher, broker.host, broker.port, "unused")
            await asyncio.to_thread(publisher.publish, "demo/door", b"open")
            await until(lambda: bool(got), within=2, what="the message through the broker")
            assert got == [b"open"]
            await asyncio.to_thread(publisher.close)
            await session.close()

    asyncio.run(main())
