"""Simulated MQTT devices: publish the same JSON, on the same topics, as the real product."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import DeviceConfig, MqttConfig, MqttTransport
from edge.device import PointInfo
from edge.reading import Value
from integrations.mqtt.profile import MqttPoint, MqttProfile

__all__ = ["MqttSimulation", "SimulatedMqttDevice"]


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


def _idle(point: MqttPoint) -> object:
    """A raw value for a point that has not been set: an ignored or first mapped value, 0."""
    if point.ignore:
        return point.ignore[0]
    if point.map:
        key = next(iter(point.map))
        return json.loads(key) if key in ("true", "false") else key
    return {"integer": 0, "number": 0.0, "boolean": False, "string": ""}[point.json_type]


class SimulatedMqttDevice:
    """Implements ``edge.device.SimulatedDevice``: ``set`` publishes the device's new state."""

    def __init__(self, *, device_id: str, topic: str, profile: MqttProfile) -> None:
        self._device_id = device_id
        self.topic = topic
        self.profile = profile
        self.document: dict[str, Any] = {}
        for point in profile.points:  # a real device always sends its whole state
            _set_path(self.document, point.path, _idle(point))
        self._values: dict[str, Value] = {}
        self._silent = False
        self._client: mqtt.Client | None = None
        self.published = 0

    @property
    def device_id(self) -> str:
        return self._device_id

    def points(self) -> tuple[PointInfo, ...]:
        return self.profile.point_infos()

    def _raw(self, point: MqttPoint, value: Value) -> object:
        if point.map is not None:
            key = next(
                (k for k, v in point.map.items() if v == value and type(v) is type(value)), None
            )
            if key is None:
                raise ValueError(f"{point.id}: {value!r} is not a mapped value")
            return (
                json.loads(key)
                if key in ("true", "false")
                else (
                    int(key) if key.lstrip("-").isdigit() and point.json_type == "integer" else key
                )
            )
        if point.json_type == "integer":
            return int(value)
        if point.json_type == "number" and not isinstance(value, bool):
            return float(value) / point.scale
        return value

    def set(self, point_id: str, value: Value) -> None:
        point = self.profile.point(point_id)
        if self._values.get(point_id) == value and point_id in self._values:
            return
        self._values[point_id] = value
        _set_path(self.document, point.path, self._raw(point, value))
        self.publish_raw(self.topic, json.dumps(self.document).encode())

    def get(self, point_id: str) -> Value | None:
        return self._values.get(point_id)

    def set_silent(self, silent: bool) -> None:
        self._silent = silent

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        if self._silent or self._client is None:
            return
        self._client.publish(topic, payload, qos=1, retain=retain)
        self.published += 1


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
        for device in devices:
            assert isinstance(device.transport, MqttTransport)
            self._devices[device.id] = SimulatedMqttDevice(
                device_id=device.id, topic=device.transport.topic, profile=profiles[device.profile]
            )
        self._client: mqtt.Client | None = None

    @property
    def devices(self) -> Mapping[str, SimulatedMqttDevice]:
        return self._devices

    async def start(self) -> None:
        if self._broker is None:
            raise ValueError("MQTT devices need an mqtt section (the broker) in the config")
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="openbranch-simulator")
        client.connect(self._broker.host, self._broker.port)
        client.loop_start()
        self._client = client
        for device in self._devices.values():
            device._client = client

    async def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
