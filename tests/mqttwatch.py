"""MQTT probes for tests: an independent paho client that watches topics on a broker, and
what the broker keeps retained, as a new subscriber sees it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.services import Mosquitto


@dataclass(frozen=True, slots=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool


class Watcher:
    """A separate client subscribed to ``topic_filter``, recording every message it gets."""

    def __init__(self, host: str, port: int, topic_filter: str) -> None:
        self.messages: list[Seen] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"watcher-{uuid.uuid4().hex[:6]}"
        )
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect(host, port)
        self._client.subscribe(topic_filter, qos=1)
        self._client.loop_start()
        assert self._subscribed.wait(5), "the watcher could not subscribe"

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(Seen(message.topic, bytes(message.payload), message.retain))
            self._changed.notify_all()

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


def retained(broker: Mosquitto, topic: str, timeout: float = 2.0) -> bytes | None:
    """The message the broker keeps for ``topic``, as a new subscriber gets it (None: none)."""
    watcher = Watcher(broker.host, broker.port, topic)
    try:
        got = watcher.wait_for(bool, timeout) if timeout else []
    except AssertionError:
        got = []
    finally:
        watcher.close()
    return got[0].payload if got and got[0].retain else None


def retained_all(broker: Mosquitto, topic_filter: str, settle: float = 0.5) -> dict[str, bytes]:
    """Every retained message under ``topic_filter``, by topic (what arrives in ``settle`` s)."""
    watcher = Watcher(broker.host, broker.port, topic_filter)
    time.sleep(settle)
    watcher.close()
    return {m.topic: m.payload for m in watcher.messages if m.retain}
