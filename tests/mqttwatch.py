"""MQTT probes for tests: an independent paho client that watches topics on a broker, and
what the broker keeps retained, as a new subscriber sees it.

"Nothing arrived" is never "nothing within N s": ``Watcher.sync()`` publishes a marker on the
watcher's own topic and waits until it comes back. The broker queues a subscriber's messages in
order (the retained ones when it handles the SUBSCRIBE, the rest as it handles each PUBLISH),
so once the marker is back, everything the broker had for the watcher before it has arrived."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.services import Mosquitto


@dataclass(frozen=True, slots=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool


MARKERS = "mqttwatch/marker"
"""Where watchers publish their markers (``MARKERS/<client id>``); never in ``messages``."""


class Watcher:
    """A separate client subscribed to ``topic_filter``, recording every message it gets."""

    def __init__(self, host: str, port: int, topic_filter: str) -> None:
        self.messages: list[Seen] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._id = f"watcher-{uuid.uuid4().hex[:6]}"
        self._marker_topic = f"{MARKERS}/{self._id}"
        self._markers_seen = 0
        self._markers_sent = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._id)
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._granted: list[ReasonCode] = []
        self._client.connect(host, port)
        self._client.loop_start()
        self._subscribe(topic_filter)

    def _subscribe(self, topic_filter: str) -> None:
        self._subscribed.clear()
        self._client.subscribe(topic_filter, qos=1)
        assert self._subscribed.wait(5), f"no SUBACK for {topic_filter}"
        assert not any(code.is_failure for code in self._granted), (
            f"the broker refused the watcher {topic_filter}: {self._granted}"
        )

    def _on_subscribe(
        self, _c: object, _u: object, _mid: int, codes: list[ReasonCode], *_: object
    ) -> None:
        self._granted = codes
        self._subscribed.set()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            if message.topic == self._marker_topic:
                self._markers_seen += 1
            elif not message.topic.startswith(f"{MARKERS}/"):
                self.messages.append(Seen(message.topic, bytes(message.payload), message.retain))
            self._changed.notify_all()

    def sync(self, timeout: float = 5.0) -> list[Seen]:
        """Everything the broker had for this watcher before now, once it has all arrived.

        A marker goes out after the subscription was acknowledged and is waited for. The broker
        queued the retained messages while it handled the SUBSCRIBE, before it read the marker;
        the marker has QoS 1 like the subscription, so it queues behind every earlier message
        (QoS 0 ones are never held back behind it)."""
        if not self._markers_sent:
            self._subscribe(self._marker_topic)  # the marker's own topic, nobody else's
        self._markers_sent += 1
        self.publish(self._marker_topic, str(self._markers_sent).encode())
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._markers_seen < self._markers_sent:
                left = deadline - time.monotonic()
                assert left > 0, f"the watcher's marker did not come back in {timeout} s"
                self._changed.wait(left)
            return list(self.messages)

    def wait_for(self, found: Callable[[list[Seen]], bool], timeout: float = 5.0) -> list[Seen]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not found(self.messages):
                left = deadline - time.monotonic()
                assert left > 0, f"not seen in {timeout} s; got {self.messages}"
                self._changed.wait(left)
            return list(self.messages)

    def payloads(self, topic: str) -> list[bytes]:
        with self._changed:
            return [m.payload for m in self.messages if m.topic == topic]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish with QoS 1 and wait until the broker has it."""
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._client.on_message = None  # no cycle: paho closes its socket pair in __del__
        self._client.on_subscribe = None

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def retained(broker: Mosquitto, topic: str, timeout: float = 5.0) -> bytes | None:
    """The message the broker keeps for ``topic``, as a new subscriber gets it (None: none,
    known once the watcher's marker came back; ``timeout`` bounds only that wait)."""
    return retained_all(broker, topic, timeout).get(topic)


def retained_all(broker: Mosquitto, topic_filter: str, timeout: float = 5.0) -> dict[str, bytes]:
    """Every retained message under ``topic_filter``, by topic: what a new subscriber got
    before its marker came back (``timeout`` bounds only that wait)."""
    with Watcher(broker.host, broker.port, topic_filter) as watcher:
        got = watcher.sync(timeout)
    return {m.topic: m.payload for m in got if m.retain}
