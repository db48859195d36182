"""The gateway's MQTT session against a private Mosquitto: v5, birth and last will, retained
state and availability, reconnects, subscriptions, and a clear error for a missing broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

import openbranch.edge.runtime.mqtt
from openbranch.edge.core.config import MqttConfig
from openbranch.edge.runtime.mqtt import MqttError, MqttSession
from openbranch.integrations.mqtt.simulator import connect_packet, publish_packet
from tests.mqttwatch import Watcher, retained
from tests.services import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[3]
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
        status.wait_for(lambda seen: [m.payload for m in seen][-1] == b"online", 15)
        assert await session.wait_subscribed(10)  # reconnected, zigbee2mqtt/+ granted again
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


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_burst_arrives_whole_and_in_order_across_read_chunks(protocol: str, qos: int) -> None:
    """The session reads the socket in 64 KiB chunks (edge/mqtt.py, _BufferedClient): packets
    that straddle chunk boundaries, bodies larger than a chunk and thousands of small messages
    published back to back must all arrive, byte for byte, in the order they were sent. QoS 0
    takes the session's own PUBLISH decoder (``fast_publish``), QoS 1 paho's.

    In a fresh interpreter (tests/integrations/mqtt/burst.py), as a gateway has its session
    to itself: after ~80 other tests in the same process the session once in ~7 runs reported
    a lost connection the broker never saw (with and without ``fast_publish``); that is an
    open item in docs/DECISIONS.md #35, not something this test should hide or be hit by."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.integrations.mqtt.burst", protocol, str(qos)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "3009 of 3009 messages, in order, byte for byte" in done.stdout, done.stdout


@pytest.mark.parametrize("v5", [True, False])
def test_the_publish_decoder_takes_whole_packets_only(v5: bool) -> None:
    """Cut a stream of PUBLISH packets at every byte: the session's decoder delivers exactly
    the packets that end before the cut, and stops at a packet boundary for paho to go on."""
    from paho.mqtt.enums import CallbackAPIVersion

    from openbranch.edge.runtime.mqtt import _BufferedClient

    wanted = [
        ("a/b", b"", False, b""),
        ("x" * 200, b"\x00\xff" * 100, True, b"\x26\x00\x01n\x00\x01v"),  # a user property
        ("zigbee2mqtt/front door", b'{"contact": false}', False, b""),
        ("t", b"y" * 20_000, False, b"\x01\x01"),  # a 3-byte length
    ]
    stream = b"".join(
        publish_packet(t, p, v5=v5, retain=r, properties=pr if v5 else b"")
        for t, p, r, pr in wanted
    )
    ends, at = [], 0
    for t, p, r, pr in wanted:
        at += len(publish_packet(t, p, v5=v5, retain=r, properties=pr if v5 else b""))
        ends.append(at)
    protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    client = _BufferedClient(CallbackAPIVersion.VERSION2, protocol=protocol)
    try:

        def take(data: bytes) -> list[tuple[str, bytes, bool]]:
            got: list[tuple[str, bytes, bool]] = []
            client._rbuf, client._rpos = bytearray(data), 0
            client._take_publishes(lambda t, p, r: got.append((t, p, r)))
            return got

        for cut in range(len(stream) + 1):
            got = take(stream[:cut])
            whole = sum(1 for e in ends if e <= cut)
            assert got == [(t, p, r) for t, p, r, _ in wanted[:whole]], cut
            assert client._rpos == (ends[whole - 1] if whole else 0), cut
        # not a QoS 0 PUBLISH: left to paho, nothing taken
        for other in (b"\x32\x05\x00\x01tq\x00", b"\x90\x03\x00\x01\x00", b"\xd0\x00"):
            client._rbuf, client._rpos = bytearray(other + stream), 0
            client._take_publishes(lambda *_: pytest.fail("took a packet paho must handle"))
            assert client._rpos == 0
    finally:
        client._reset_sockets()


def test_wait_subscribed_needs_a_session() -> None:
    async def main() -> None:
        session = MqttSession(MqttConfig(host="127.0.0.1", port=free_port()), branch=BRANCH)
        session.subscribe("devices/#", lambda *_: None)
        assert await session.connect(wait=0.3) is False
        assert await session.wait_subscribed(0.3) is False  # no broker, no subscription
        await session.close()

    asyncio.run(main())


def test_wait_subscribed_returns_when_the_broker_answered(tmp_path: Path) -> None:
    """Behind an ACL (Mosquitto's acl_file grants every SUBSCRIBE and filters what it
    delivers): ``wait_subscribed`` returns once both SUBSCRIBEs are answered, and only the
    permitted filter delivers."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite openbranch/#\ntopic readwrite allowed/#\n", encoding="utf-8")
    got: list[str] = []
    with Mosquitto(f"acl_file {acl}\n") as broker:

        async def main() -> None:
            session = session_for(broker)
            session.subscribe("allowed/#", lambda t, _p, _r: got.append(t))
            session.subscribe("secret/#", lambda t, _p, _r: got.append(t))
            assert await session.connect()
            assert await session.wait_subscribed()
            assert session._unacked == {}
            with Watcher(broker.host, broker.port, "ignored") as publisher:
                publisher.publish("secret/a", b"1")
                publisher.publish("allowed/a", b"1")
            await until(lambda: got == ["allowed/a"])
            await session.close()

        asyncio.run(main())


def test_a_refused_subscription_is_logged_naming_its_filter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A SUBACK refusing a filter (0x87, not authorized; brokers with a subscribe ACL send it,
    Mosquitto's acl_file does not, so this one is handed to the callback directly)."""

    async def main() -> None:
        session = MqttSession(MqttConfig(host="127.0.0.1", port=free_port()), branch=BRANCH)
        session._loop = asyncio.get_running_loop()
        session._unacked = {7: "secret/#", 8: "allowed/#"}
        refused = ReasonCode(PacketTypes.SUBACK, identifier=0x87)
        with caplog.at_level("ERROR", logger="openbranch.edge.runtime.mqtt"):
            session._on_subscribe(session._client, None, 7, [refused], None)
            session._on_subscribe(
                session._client, None, 8, [ReasonCode(PacketTypes.SUBACK, identifier=1)], None
            )
        await asyncio.sleep(0)
        assert session._unacked == {}
        assert not await session.wait_subscribed(0.1)  # answered, but never connected
        await session.close()

    asyncio.run(main())
    assert "refused the subscription to secret/# (Not authorized)" in caplog.text
    assert "allowed/#" not in caplog.text


@contextlib.contextmanager
def numbered(broker: Mosquitto, topic: str, count: int) -> Iterator[None]:
    """A publisher sending b"0", b"1", ... ``count`` messages on ``topic`` at QoS 1, as fast
    as paho queues them; it stays connected until the block ends."""
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2)
    publisher.max_queued_messages_set(0)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    try:
        for i in range(count):
            publisher.publish(topic, str(i).encode(), qos=1)
        yield
    finally:
        publisher.loop_stop()
        publisher.disconnect()


def test_a_flood_is_held_back_at_the_broker_not_in_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Messages arrive faster than the handlers take them: the session holds at most
    INBOX_MAX unhandled messages (paho's thread stops reading until the loop has handled half),
    the rest wait at the broker (here without a queue limit; Mosquitto's default of 1,000
    queued messages per client would drop the excess there), and every message arrives, in
    order."""
    monkeypatch.setattr(openbranch.edge.runtime.mqtt, "INBOX_MAX", 200)
    monkeypatch.setattr(openbranch.edge.runtime.mqtt, "DISPATCH_SLICE", 50)
    total = 3000
    got: list[bytes] = []
    backlog: list[int] = []

    async def main() -> None:
        session = session_for(mosquitto)

        def slow(_t: str, payload: bytes, _r: bool) -> None:
            backlog.append(len(session._inbox))
            got.append(payload)
            time.sleep(0.0003)  # a handler slower than the wire

        session.subscribe("flood/#", slow)
        assert await session.connect()
        assert await session.wait_subscribed()
        with numbered(mosquitto, "flood/x", total):
            try:
                await until(lambda: len(got) == total, within=60)
            finally:
                await session.close()

    with Mosquitto("max_queued_messages 0\n") as mosquitto:
        asyncio.run(main())
    assert got == [str(i).encode() for i in range(total)]
    assert max(backlog) < 200  # the bound held (a handler sees at most INBOX_MAX - 1 queued)
    assert max(backlog) >= 100  # and the flood did reach it: the test exercised the wait


def test_close_hands_over_every_message_already_received(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """paho acknowledges a QoS 1 message to the broker as soon as the session has queued it;
    closing with messages still queued must hand them to the handlers, not drop them."""
    monkeypatch.setattr(
        openbranch.edge.runtime.mqtt, "DISPATCH_SLICE", 20
    )  # so close() starts with a backlog
    got: list[bytes] = []
    received = [0]
    before_close = [0]
    at_close = [0]

    async def main(broker: Mosquitto) -> None:
        session = session_for(broker)
        queue = session._on_publish

        def counting(topic: str, payload: bytes, retained: bool) -> None:
            received[0] += 1
            queue(topic, payload, retained)

        session._on_publish = counting  # type: ignore[method-assign]
        session.subscribe("queued/#", lambda _t, p, _r: (got.append(p), time.sleep(0.002)))
        assert await session.connect()
        assert await session.wait_subscribed()
        with numbered(broker, "queued/x", 2000):
            await until(lambda: len(got) >= 50 and received[0] - len(got) >= 500, within=30)
            before_close[0] = len(got)
            await session.close()
            at_close[0] = len(got)  # the gateway's last commit comes right after close()

    with Mosquitto("max_queued_messages 0\n") as broker:
        asyncio.run(main(broker))
    assert at_close[0] == len(got) == received[0] > before_close[0] + 500
    assert got == [str(i).encode() for i in range(len(got))]


def test_raw_packets_of_the_lean_publisher_reach_a_subscriber(mosquitto: Mosquitto) -> None:
    """``connect_packet`` and ``publish_packet`` (bench/ingest.py's devices) as Mosquitto
    reads them: a CONNACK, then every message to a subscriber, retained flag included."""
    address = (mosquitto.host, mosquitto.port)
    with (
        Watcher(*address, "raw/#") as watcher,
        socket.create_connection(address, timeout=5) as sock,
    ):
        sock.sendall(connect_packet("raw-publisher"))
        assert sock.recv(4)[:1] == bytes([0x20])  # CONNACK
        sock.sendall(
            publish_packet("raw/a", b"x" * 200) + publish_packet("raw/b", b"kept", retain=True)
        )
        got = watcher.wait_for(lambda seen: len(seen) == 2)
    assert [(m.topic, m.payload) for m in got] == [("raw/a", b"x" * 200), ("raw/b", b"kept")]
    assert retained(mosquitto, "raw/b") == b"kept"
