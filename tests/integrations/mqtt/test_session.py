"""The gateway's MQTT session against a private Mosquitto: v5, birth and last will, retained
state and availability, reconnects, subscriptions, and a clear error for a missing broker."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from edge.config import MqttConfig
from edge.mqtt import MqttError, MqttSession
from tests.integrations.mqtt.conftest import Watcher, retained
from tests.services import Mosquitto, free_port

BRANCH = "test-branch"
STATUS = f"openbranch/{BRANCH}/status"


def session_for(broker: Mosquitto, **config: object) -> MqttSession:
    return MqttSession(
        MqttConfig.model_validate({"host": broker.host, "port": broker.port, **config}),
        branch=BRANCH,
    )


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_birth_is_retained_and_v5_is_negotiated(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        session = session_for(mosquitto)
        assert await session.connect()
        assert session.protocol is MQTTProtocolVersion.MQTTv5
        assert await asyncio.to_thread(retained, mosquitto, STATUS) == b"online"
        await session.close()

    asyncio.run(main())


def test_protocol_311_when_configured(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        session = session_for(mosquitto, protocol="3.1.1")
        assert await session.connect()
        assert session.protocol is MQTTProtocolVersion.MQTTv311
        await session.close()

    asyncio.run(main())


def test_clean_close_says_offline(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        session = session_for(mosquitto)
        assert await session.connect()
        await session.close()
        assert not session.connected

    asyncio.run(main())
    assert retained(mosquitto, STATUS) == b"offline"


def test_state_and_availability_are_retained_per_device(mosquitto: Mosquitto) -> None:
    state = {"door": {"open": True, "locked": False}, "time": "2026-03-02T10:00:00+00:00"}

    async def main() -> None:
        session = session_for(mosquitto)
        assert await session.connect()
        session.publish_state("front-door", state)
        session.publish_availability("front-door", True)
        session.publish_availability("counter", False)
        await asyncio.sleep(0.2)
        await session.close()

    asyncio.run(main())
    got = retained(mosquitto, f"openbranch/{BRANCH}/front-door/state")
    assert got is not None and json.loads(got) == state
    assert retained(mosquitto, f"openbranch/{BRANCH}/front-door/availability") == b"online"
    assert retained(mosquitto, f"openbranch/{BRANCH}/counter/availability") == b"offline"


def test_lost_connection_publishes_the_last_will_then_reconnects(
    mosquitto: Mosquitto, watch: Callable[[str], Watcher]
) -> None:
    """The session's socket dies without DISCONNECT: the broker sends the retained last will;
    the session reconnects, says online again and its subscriptions still deliver."""
    status = watch(STATUS)
    got: list[tuple[str, bytes, bool, int]] = []

    async def main() -> None:
        session = session_for(mosquitto, keepalive=5)
        session.subscribe(
            "zigbee2mqtt/+", lambda t, p, r: got.append((t, p, r, threading.get_ident()))
        )
        assert await session.connect()
        status.wait_for(lambda seen: [m.payload for m in seen] == [b"online"])
        sock = session._client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # as a pulled cable or a killed process looks
        status.wait_for(lambda seen: b"offline" in [m.payload for m in seen])
        await until(lambda: session.connected, within=10)
        status.wait_for(lambda seen: [m.payload for m in seen][-1] == b"online")
        with Watcher(mosquitto.host, mosquitto.port, "ignored") as publisher:
            publisher.publish("zigbee2mqtt/front-door", b'{"contact": true}')
            await until(lambda: bool(got))
        await session.close()
        status.wait_for(lambda seen: len(seen) >= 4 and seen[-1].payload == b"offline")

    asyncio.run(main())
    changes = [m.payload for m in status.messages]
    changes = [p for i, p in enumerate(changes) if i == 0 or p != changes[i - 1]]
    # (a birth whose PUBACK the cut lost is sent again on reconnect: same value, twice)
    assert changes == [b"online", b"offline", b"online", b"offline"]
    assert got == [("zigbee2mqtt/front-door", b'{"contact": true}', False, threading.get_ident())]


def test_broker_restart_restores_birth_and_latest_state(mosquitto: Mosquitto) -> None:
    """Mosquitto here keeps nothing across restarts: the session publishes the birth and the
    latest retained state again; what was published while away is not queued, only kept."""

    async def main() -> None:
        session = session_for(mosquitto, keepalive=5)
        assert await session.connect()
        session.publish_state("counter", {"occupancy": {"entered": 1}})
        await asyncio.to_thread(mosquitto.stop)
        await until(lambda: not session.connected)
        for entered in range(2, 50):
            session.publish_state("counter", {"occupancy": {"entered": entered}})
        await asyncio.to_thread(mosquitto.start)
        await until(lambda: session.connected, within=15)
        await asyncio.sleep(0.3)
        assert await asyncio.to_thread(retained, mosquitto, STATUS) == b"online"
        state = await asyncio.to_thread(retained, mosquitto, f"openbranch/{BRANCH}/counter/state")
        assert state is not None and json.loads(state) == {"occupancy": {"entered": 49}}
        await session.close()

    asyncio.run(main())


def test_handlers_see_retained_flag(mosquitto: Mosquitto) -> None:
    with Watcher(mosquitto.host, mosquitto.port, "ignored") as publisher:
        publisher.publish("devices/a", b"stored", retain=True)
    got: list[tuple[bytes, bool]] = []

    async def main() -> None:
        session = session_for(mosquitto)
        session.subscribe("devices/#", lambda _t, p, r: got.append((p, r)))
        assert await session.connect()
        await until(lambda: bool(got))
        with Watcher(mosquitto.host, mosquitto.port, "ignored") as publisher:
            publisher.publish("devices/a", b"live")
            await until(lambda: len(got) == 2)
        await session.close()

    asyncio.run(main())
    assert got == [(b"stored", True), (b"live", False)]


def test_unreachable_broker_is_named() -> None:
    port = free_port()
    config = MqttConfig(host="127.0.0.1", port=port)

    async def main() -> None:
        session = MqttSession(config, branch=BRANCH)
        start = time.monotonic()
        with pytest.raises(MqttError, match=f"MQTT broker 127.0.0.1:{port}: unreachable"):
            await session.connect(wait=3, required=True)
        assert time.monotonic() - start < 2.5  # refused at once: no v5 wait, no 3.1.1 retry
        assert session.protocol is MQTTProtocolVersion.MQTTv5

        quiet = MqttSession(config, branch=BRANCH)
        assert await quiet.connect(wait=0.5) is False  # the gateway's way: log, retry, go on
        await quiet.close()

    asyncio.run(main())


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_burst_arrives_whole_and_in_order_across_read_chunks(protocol: str) -> None:
    """The session reads the socket in 64 KiB chunks (edge/mqtt.py, _BufferedClient): packets
    that straddle chunk boundaries, bodies larger than a chunk and thousands of small messages
    published back to back must all arrive, byte for byte, in the order they were sent.

    A private broker without Mosquitto's queue limit (1000 messages per slow subscriber by
    default, dropped beyond it): on a loaded machine the limit, not the session, lost some."""
    with Mosquitto("max_queued_messages 0\nmax_queued_bytes 0\n") as mosquitto:
        _burst(mosquitto, protocol)


def _burst(mosquitto: Mosquitto, protocol: str) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edge.mqtt import READ_CHUNK

    sizes = [1, 2, 127, 128, 16_383, 16_384, READ_CHUNK - 1, READ_CHUNK, 3 * READ_CHUNK + 7]
    payloads = [
        *(f"{i:06d}".encode() * (1 + i % 9) for i in range(3000)),
        *(bytes([i % 251]) * size for i, size in enumerate(sizes)),
    ]
    got: list[bytes] = []

    async def main() -> None:
        session = session_for(mosquitto, protocol=protocol)
        session.subscribe("burst/#", lambda _t, p, _r: got.append(p))
        assert await session.connect()
        version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=version)
        publisher.max_queued_messages_set(0)
        publisher.connect(mosquitto.host, mosquitto.port)
        publisher.loop_start()
        try:
            for i, payload in enumerate(payloads):
                props = None
                if version == mqtt.MQTTv5 and i % 3 == 0:
                    props = Properties(PacketTypes.PUBLISH)
                    props.UserProperty = ("n", str(i))
                publisher.publish(f"burst/{i % 7}", payload, qos=1, properties=props)
            await until(lambda: len(got) >= len(payloads), within=30)
        finally:
            publisher.loop_stop()
            publisher.disconnect()
        await session.close()

    asyncio.run(main())
    assert len(got) == len(payloads)
    assert got == payloads
