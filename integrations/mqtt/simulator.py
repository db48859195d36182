"""Simulated MQTT devices: publish the same JSON, on the same topics, as the real product.

Each simulated device keeps the document the product would publish (shaped like the
profile's first example on each topic) and publishes it whole whenever a point changes, as
Zigbee2MQTT does. An event point (a button press) publishes on every ``set``. Devices whose
profile has a ``set_topic`` obey commands on ``<topic>/<set_topic>`` and publish their state
after every command, changed or not, as a Zigbee2MQTT lock does; ``set_ignoring`` makes one
take commands and do nothing (a lock whose motor or radio link is dead), and a test that
calls ``set`` on an actuator moves it by hand. ``publish_raw`` sends anything, for bad-payload
tests.

``publish_packet`` and ``connect_packet`` encode raw MQTT packets, for a publisher that must
cost its host as little as possible (bench/ingest.py) and for tests of the session's decoder.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from openbranch.edge.core.config import DeviceConfig, MqttConfig, MqttTransport
from openbranch.edge.core.device import PointInfo
from openbranch.edge.core.reading import Value
from openbranch.integrations.mqtt.profile import MqttPoint, MqttProfile

__all__ = ["MqttSimulation", "SimulatedMqttDevice", "connect_packet", "publish_packet"]

log = logging.getLogger(__name__)


def _packet(header: int, body: bytes) -> bytes:
    """A control packet: the header byte, the body's length as a variable byte integer."""
    size, length = len(body), bytearray()
    while True:
        byte, size = size % 128, size // 128
        length.append(byte | (0x80 if size else 0))
        if not size:
            return bytes([header]) + bytes(length) + body


def publish_packet(
    topic: str, payload: bytes, *, retain: bool = False, v5: bool = False, properties: bytes = b""
) -> bytes:
    """One MQTT PUBLISH at QoS 0 (``properties``: a v5 property block's encoded contents)."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name
    if v5:
        body += bytes([len(properties)]) + properties
    return _packet(0x30 | int(retain), body + payload)


def connect_packet(client_id: str, keepalive: int = 60) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session, no credentials."""
    ident = client_id.encode()
    header = b"\x00\x04MQTT\x04\x02" + keepalive.to_bytes(2, "big")
    return _packet(0x10, header + len(ident).to_bytes(2, "big") + ident)


def _set_path(doc: dict[str, Any], path: str, value: object) -> None:
    parts = path.split(".")
    node: Any = doc
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            while len(node) <= int(part):
                node.append([] if nxt.isdigit() else {})
            node = node[int(part)]
        else:
            node = node.setdefault(part, [] if nxt.isdigit() else {})
    last = parts[-1]
    if isinstance(node, list):
        while len(node) <= int(last):
            node.append(None)
        node[int(last)] = value
    else:
        node[last] = value


def _get_path(doc: Any, path: str) -> object:
    node = doc
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _from_key(key: str, point: MqttPoint) -> object:
    """A map key ('true', 'LOCK', '3') as the JSON value the device sends."""
    if key in ("true", "false"):
        return key == "true"
    if point.json_type == "integer" and key.lstrip("-").isdigit():
        return int(key)
    return key


def _idle(point: MqttPoint) -> object:
    """A raw value for a point that has not been set: an ignored or first mapped value, 0."""
    if point.ignore:
        return _from_key(point.ignore[0], point)
    if point.map:
        return _from_key(next(iter(point.map)), point)
    zero: object = {"integer": 0, "number": 0.0, "boolean": False, "string": ""}[point.json_type]
    return str(zero) if point.quoted else zero


class SimulatedMqttDevice:
    """Implements ``edge.device.SimulatedDevice``: ``set`` publishes the device's new state."""

    def __init__(self, *, device_id: str, topic: str, profile: MqttProfile) -> None:
        self._device_id = device_id
        self.topic = topic
        self.profile = profile
        self.documents: dict[str | None, dict[str, Any]] = {}
        for sub in dict.fromkeys(p.topic for p in profile.points):
            example = next((e for e in profile.examples if e.topic == sub), None)
            doc: dict[str, Any] = json.loads(example.payload) if example else {}
            for point in profile.points_on(sub):  # a real device always sends its whole state
                if example is None or point.event or _get_path(doc, point.path) is None:
                    _set_path(doc, point.path, _idle(point))
            self.documents[sub] = doc
        self._values: dict[str, Value] = {}
        self._lock = threading.Lock()  # commands arrive on paho's thread
        self._silent = False
        self._ignoring = False
        self._client: mqtt.Client | None = None
        self.published = 0
        self.commands = 0  # messages received on the set topic, obeyed or not

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def document(self) -> dict[str, Any]:
        """The document published on the device's own topic."""
        return self.documents[None]

    def topic_of(self, point: MqttPoint) -> str:
        return self.topic if point.topic is None else f"{self.topic}/{point.topic}"

    def points(self) -> tuple[PointInfo, ...]:
        return self.profile.point_infos()

    def _raw(self, point: MqttPoint, value: Value) -> object:
        if point.map is not None:
            key = next(
                (k for k, v in point.map.items() if v == value and type(v) is type(value)), None
            )
            if key is None:
                raise ValueError(f"{point.id}: {value!r} is not a mapped value")
            return _from_key(key, point)
        raw: object = value
        if point.json_type == "integer":
            raw = int(value)
        elif point.json_type == "number" and not isinstance(value, bool | str):
            raw = float(value) / point.scale
        return str(raw) if point.quoted else raw

    def set(self, point_id: str, value: Value) -> None:
        """Take ``value`` and publish the new state (nothing when the state is unchanged)."""
        self._apply(point_id, value, always=False)

    def _apply(self, point_id: str, value: Value, *, always: bool) -> None:
        point = self.profile.point(point_id)
        raw = self._raw(point, value)  # raises ValueError before anything changes
        with self._lock:
            same = point_id in self._values and self._values[point_id] == value
            if same and not point.event and not always:
                return
            self._values[point_id] = value
            doc = self.documents[point.topic]
            _set_path(doc, point.path, raw)
            payload = json.dumps(doc).encode()
            if point.event:  # the press is sent once; the document goes back to idle
                _set_path(doc, point.path, _idle(point))
        self.publish_raw(self.topic_of(point), payload)

    def get(self, point_id: str) -> Value | None:
        return self._values.get(point_id)

    def set_silent(self, silent: bool) -> None:
        self._silent = silent

    def set_ignoring(self, ignoring: bool) -> None:
        """Take commands and do nothing, publish nothing (or obey them again)."""
        self._ignoring = ignoring

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish ``payload`` as is (QoS 1), unless silent or not started."""
        if self._silent or self._client is None:
            return
        self._client.publish(topic, payload, qos=1, retain=retain)
        self.published += 1

    def command(self, payload: bytes) -> None:
        """A message on the set topic: apply what it sets, publish the state."""
        self.commands += 1
        if self._ignoring:
            return
        try:
            doc = json.loads(payload)
        except ValueError:
            log.warning("%s: a command that is not JSON", self.device_id)
            return
        for point in self.profile.points:
            raw = _get_path(doc, point.path) if point.writable else None
            if raw is None:
                continue
            key = json.dumps(raw) if isinstance(raw, bool) else str(raw)
            value = point.map.get(key) if point.map is not None else raw
            if isinstance(value, bool | int | float | str):
                self._apply(point.id, value, always=True)


class MqttSimulation:
    """Simulated MQTT devices publishing through one client to the gateway's broker."""

    def __init__(
        self,
        devices: Sequence[DeviceConfig],
        profiles: Mapping[str, MqttProfile],
        broker: MqttConfig | None,
    ) -> None:
        self._broker = broker
        self._devices: dict[str, SimulatedMqttDevice] = {}
        self._commands: dict[str, SimulatedMqttDevice] = {}
        for device in devices:
            if not isinstance(device.transport, MqttTransport):
                raise TypeError(f"{device.id}: not an MQTT transport")
            profile = profiles[device.profile]
            sim = SimulatedMqttDevice(
                device_id=device.id, topic=device.transport.topic, profile=profile
            )
            self._devices[device.id] = sim
            if profile.set_topic is not None:
                self._commands[f"{sim.topic}/{profile.set_topic}"] = sim
        self._client: mqtt.Client | None = None
        self._listening = threading.Event()  # the broker acknowledged the set topics

    @property
    def devices(self) -> Mapping[str, SimulatedMqttDevice]:
        return self._devices

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        if self._commands:
            client.subscribe([(topic, 1) for topic in self._commands])

    def _on_subscribe(self, *_: object) -> None:
        self._listening.set()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        device = self._commands.get(message.topic)
        if device is not None:
            device.command(bytes(message.payload))

    async def start(self) -> None:
        if self._broker is None:
            raise ValueError("MQTT devices need an mqtt section (the broker) in the config")
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"openbranch-simulator-{uuid.uuid4().hex[:6]}"
        )
        if self._broker.username:
            password = self._broker.password.resolve() if self._broker.password else None
            client.username_pw_set(self._broker.username, password)
        if self._broker.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        await asyncio.to_thread(client.connect, self._broker.host, self._broker.port)
        client.loop_start()
        self._client = client
        for device in self._devices.values():
            device._client = client
        # a command sent before the broker has the subscription would be lost
        if self._commands and not await asyncio.to_thread(self._listening.wait, 10.0):
            log.warning("simulated devices: the broker did not acknowledge their set topics")

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        for device in self._devices.values():
            device._client = None
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        client.on_connect = None  # no cycle: paho closes its socket pair in __del__
        client.on_subscribe = None
        client.on_message = None
