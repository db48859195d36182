"""An MQTT device as the gateway sees it: it pushes; every good message becomes readings.

Messages are stamped with the gateway's clock when they arrive. Retained messages are refused
(their time is unknown); so is every bad payload, with a reason naming the topic, counted by
the coordinator. Nothing a device sends can stop the gateway.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping

from edge import schema
from edge.clock import Clock
from edge.command import Command, CommandError
from edge.config import DeviceConfig, MqttTransport
from edge.device import Accept, PollResult, Reject
from edge.mqtt import MqttSession
from edge.reading import Reading, Value
from integrations.mqtt.payload import Extractor, PayloadError, parse
from integrations.mqtt.profile import MqttProfile

__all__ = ["MqttDevice"]


class MqttDevice:
    """Implements ``edge.device.DeviceSource`` for one MQTT device."""

    def __init__(
        self,
        *,
        config: DeviceConfig,
        profile: MqttProfile,
        session: MqttSession | None,
        branch: str,
        clock: Clock,
    ) -> None:
        if not isinstance(config.transport, MqttTransport):
            raise TypeError(f"{config.id}: not an MQTT transport")
        self._config = config
        self._topic = config.transport.topic
        self._profile = profile
        self._session = session
        self._branch = branch
        self._clock = clock
        self._extractor = Extractor(profile.points)
        self._targets = {  # point -> (measurement, field key, tags), resolved once
            p.id: (
                schema.measurement(p.measurement),
                p.field,
                tuple(sorted(profile.tags_for(p, config.zone).items())),
            )
            for p in profile.points
            if p.measurement is not None and p.field is not None
        }

    @property
    def device_id(self) -> str:
        return self._config.id

    @property
    def topic(self) -> str:
        return self._topic

    def intervals(self) -> Mapping[str, float]:
        return {}

    def describe_plan(self) -> str:
        readable = sum(1 for p in self._profile.points if p.measurement is not None)
        return f"{self.device_id}: MQTT {self._topic} ({readable} points)"

    async def poll(self, groups: Collection[str]) -> PollResult:
        return PollResult()

    def readings(self, payload: bytes) -> tuple[list[Reading], dict[str, str]]:
        """Readings from one message, and the points refused with their reasons.

        Raises PayloadError when the whole message is refused.
        """
        doc = parse(payload, max_bytes=self._profile.max_bytes, max_depth=self._profile.max_depth)
        got = self._extractor.extract(doc)
        now = self._clock.now()
        grouped: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Value]] = {}
        for point_id, value in got.values.items():
            measurement, key, tags = self._targets[point_id]
            grouped.setdefault((measurement.name, tags), {})[key] = value
        readings = [
            Reading(
                branch=self._branch,
                device=self.device_id,
                measurement=schema.MEASUREMENTS[name],
                fields=fields,
                tags=dict(tags),
                time=now,
            )
            for (name, tags), fields in grouped.items()
        ]
        return readings, dict(got.problems)

    async def listen(self, accept: Accept, reject: Reject) -> None:
        if self._session is None:
            raise CommandError(f"{self.device_id}: MQTT device but no mqtt section in the config")

        def handle(topic: str, payload: bytes, retained: bool) -> None:
            if retained:
                reject(topic, "retained: a stored message of unknown time")
                return
            try:
                readings, problems = self.readings(payload)
            except PayloadError as exc:
                reject(topic, str(exc))
                return
            except ValueError as exc:  # a value the schema refuses (e.g. not a choice)
                reject(topic, f"schema: {exc}")
                return
            for reason in problems.values():
                reject(topic, reason)
            if readings:
                accept(readings)

        self._session.subscribe(self._topic, handle)
        await asyncio.Event().wait()  # until cancelled

    async def write(self, command: Command) -> Value:
        """Publish the command to the device's set topic (Zigbee2MQTT style)."""
        if command.expired(self._clock.now()):
            raise CommandError(f"{self.device_id}.{command.point}: expired, not carried out")
        point = self._profile.point(command.point)
        if not point.writable or self._profile.set_topic is None or self._session is None:
            raise CommandError(f"{self.device_id}.{point.id} is not writable")
        raw: object = command.value
        if point.map is not None:
            reverse = {v: k for k, v in point.map.items()}
            if command.value not in reverse:
                raise CommandError(f"{self.device_id}.{point.id}: {command.value!r} is not mapped")
            key = reverse[command.value]
            raw = json.loads(key) if key in ("true", "false") else key
        self._session.publish(
            f"{self._topic}/{self._profile.set_topic}", json.dumps({point.path: raw})
        )
        return command.value

    async def close(self) -> None:
        return None
