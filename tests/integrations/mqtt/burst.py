"""The burst of tests/integrations/mqtt/test_session.py, run in a fresh interpreter:

    python -m tests.integrations.mqtt.burst PROTOCOL QOS

Starts a private Mosquitto (no queue limit), a gateway MQTT session subscribed to burst/#,
and a publisher sending 3,009 messages (thousands of small ones, then bodies around and above
64 KiB, which the socket hands over in parts; v5 with user properties on every third). Prints
the count and exits 0 when every message arrived in order, byte for byte; otherwise prints the
broker's log, exits 1.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections import Counter

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from openbranch.edge.core.config import MqttConfig
from openbranch.edge.demo.servers import Mosquitto
from openbranch.edge.runtime.mqtt import MqttSession

CHUNK = 64 * 1024  # about what one recv() returns from a busy loopback socket
SIZES = [1, 2, 127, 128, 16_383, 16_384, CHUNK - 1, CHUNK, 3 * CHUNK + 7]
PAYLOADS = [
    *(f"{i:06d}".encode() * (1 + i % 9) for i in range(3000)),
    *(bytes([i % 251]) * size for i, size in enumerate(SIZES)),
]


async def burst(broker: Mosquitto, protocol: str, qos: int) -> tuple[list[bytes], int]:
    """The payloads the session received, in arrival order, and how many of the publisher's
    QoS 1 messages the broker acknowledged (0 at QoS 0)."""
    got: list[bytes] = []
    acked: list[int] = []
    config = MqttConfig(host=broker.host, port=broker.port, protocol=protocol)  # type: ignore[arg-type]
    session = MqttSession(config, branch="test-branch")
    session.subscribe("burst/#", lambda _t, p, _r: got.append(p))
    if not await session.connect() or not await session.wait_subscribed():
        return got, 0
    version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=version)
    publisher.max_queued_messages_set(0)
    publisher.on_publish = lambda _c, _u, mid, _r, _p: acked.append(mid)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    try:
        for i, payload in enumerate(PAYLOADS):
            props = None
            if version == mqtt.MQTTv5 and i % 3 == 0:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.UserProperty = ("n", str(i))
            publisher.publish(f"burst/{i % 7}", payload, qos=qos, properties=props)
        deadline = time.monotonic() + 30
        while len(got) < len(PAYLOADS) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        await session.close()
    return got, len(acked) if qos else 0


def _difference(got: list[bytes]) -> str:
    """Which messages are missing, doubled or out of place (by index in PAYLOADS)."""
    index = {p: i for i, p in enumerate(PAYLOADS)}
    seen = [index.get(p, -1) for p in got]
    missing = sorted(set(range(len(PAYLOADS))) - set(seen))
    doubled = sorted(i for i, n in Counter(seen).items() if n > 1)
    backwards = [(a, b) for a, b in itertools.pairwise(seen) if b < a]
    return (
        f"missing {missing[:20]}, doubled {doubled[:20]}, unknown {seen.count(-1)},"
        f" out of order at {backwards[:20]}"
    )


def main() -> int:
    protocol, qos = sys.argv[1], int(sys.argv[2])
    with Mosquitto("max_queued_messages 0\nmax_queued_bytes 0\nlog_type notice\n") as broker:
        got, acked = asyncio.run(burst(broker, protocol, qos))
        if got == PAYLOADS:
            print(f"{len(got)} of {len(PAYLOADS)} messages, in order, byte for byte")
            return 0
        print(
            f"{len(got)} of {len(PAYLOADS)} messages; in order so far: {got == PAYLOADS[: len(got)]}"
        )
        print(_difference(got), f"; the broker acknowledged {acked} of the publisher's messages")
        print((broker.dir / "broker.log").read_text(errors="replace")[-4000:])
        return 1


if __name__ == "__main__":
    sys.exit(main())
