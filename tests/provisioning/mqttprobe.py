"""MQTT v5 probes of a broker's accounts and ACL that report the broker's own answer.

A refusal is the broker's reason code, never a timeout: CONNACK's (0x86/0x87), PUBACK's for a
QoS 1 publish (0x87 Not authorized: Mosquitto 2 tells v5 clients), and for reads, which
Mosquitto's ``acl_file`` grants at SUBSCRIBE and filters at delivery, a marker message
published after the probe on a topic the reader may read: once the marker is in, the probe
either came before it or never will.
"""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.services import Mosquitto

__all__ = ["NOT_AUTHORIZED", "Session", "connack", "reads"]

NOT_AUTHORIZED = 0x87
WAIT = 10.0  # seconds for an answer the broker owes; failing it is an error, not a "no"


class Session:
    """A connected MQTT v5 client whose every call waits for the broker's answer."""

    def __init__(self, broker: Mosquitto, user: str | None, password: str | None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password)
        self._lock = threading.Lock()
        self._connack = threading.Event()
        self.connack: int | None = None
        self._acks: dict[int, int] = {}
        self._acked = threading.Condition(self._lock)
        self.messages: list[tuple[str, bytes]] = []
        self._topics: dict[str, threading.Event] = {}
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_ack
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not self._connack.wait(WAIT):
            self.close()
            raise AssertionError(f"no CONNACK within {WAIT} s: {broker.log_tail()}")

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connack = int(rc.value)
        self._connack.set()

    def _on_ack(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._acked:
            self._acks[mid] = int(rc.value)
            self._acked.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, rcs: list[Any], _p: Any) -> None:
        with self._acked:
            self._acks[mid] = max(int(rc.value) for rc in rcs)
            self._acked.notify_all()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))
            event = self._topics.get(message.topic)
        if event is not None:
            event.set()

    def _ack(self, mid: int) -> int:
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._acks, WAIT):
                raise AssertionError(f"no acknowledgement of message {mid} within {WAIT} s")
            return self._acks.pop(mid)

    def publish(self, topic: str, payload: bytes = b"probe") -> int:
        """The PUBACK reason code of a QoS 1 publish (0 or 0x10: taken; 0x87: refused)."""
        info = self.client.publish(topic, payload, qos=1)
        return self._ack(info.mid)

    def subscribe(self, *topics: str) -> int:
        """The SUBACK's highest reason code (Mosquitto's acl_file grants every filter)."""
        _rc, mid = self.client.subscribe([(t, 1) for t in topics])
        assert mid is not None
        return self._ack(mid)

    def expect(self, topic: str) -> threading.Event:
        """An event set when a message on exactly ``topic`` arrives."""
        with self._lock:
            return self._topics.setdefault(topic, threading.Event())

    def received(self, topic: str) -> bool:
        with self._lock:
            return any(t == topic for t, _p in self.messages)

    def close(self) -> None:
        self.client.disconnect()  # wakes the network thread, so loop_stop does not wait 1 s
        self.client.loop_stop()


def connack(broker: Mosquitto, user: str | None, password: str | None) -> int:
    """The CONNACK reason code the broker gives ``user`` (0: accepted)."""
    session = Session(broker, user, password)
    try:
        assert session.connack is not None
        return session.connack
    finally:
        session.close()


def reads(
    broker: Mosquitto,
    reader: tuple[str, str],
    topic: str,
    *,
    writer: tuple[str, str],
    marker: str,
    publish_to: str | None = None,
) -> bool:
    """Does ``reader``, subscribed to ``topic``, get what ``writer`` publishes there (or on
    ``publish_to``, a topic the filter ``topic`` matches)?

    ``writer`` must be allowed to publish both that topic and ``marker`` (asserted from its
    PUBACKs) and ``reader`` to read ``marker``; the answer is read once the marker is in."""
    target = publish_to or topic
    reading = Session(broker, *reader)
    writing = Session(broker, *writer)
    try:
        assert reading.connack == 0 and writing.connack == 0
        arrived = reading.expect(marker)
        assert reading.subscribe(topic, marker) < 0x80
        assert writing.publish(target, b"probe") < 0x80, f"{writer[0]} may not write {target}"
        assert writing.publish(marker, b"marker") < 0x80, f"{writer[0]} may not write {marker}"
        assert arrived.wait(WAIT), f"{reader[0]} never got the marker on {marker}"
        return reading.received(target)
    finally:
        writing.close()
        reading.close()
