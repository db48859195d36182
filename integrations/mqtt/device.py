"""An MQTT device as the gateway sees it: it pushes; every good message becomes readings.

Messages are stamped with the gateway's clock (UTC) when they arrive. Retained messages are
refused (their time is unknown); so is every bad payload, with a reason naming the topic,
counted by the coordinator. Nothing a device sends can stop the gateway: the message handler
never raises.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Mapping

from openbranch.edge.core import schema
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.command import Command, CommandError
from openbranch.edge.core.config import DeviceConfig, MqttTransport
from openbranch.edge.core.device import Accept, DeviceError, DeviceUnreachable, PollResult, Reject
from openbranch.edge.core.messaging import MqttLink
from openbranch.edge.core.reading import Reading, Value
from openbranch.integrations.mqtt.payload import Extractor, PayloadError, parse
from openbranch.integrations.mqtt.profile import MqttProfile
from openbranch.integrations.profile import ProfileError

__all__ = ["MqttDevice"]

log = logging.getLogger(__name__)


_Shape = tuple[schema.Measurement, dict[str, str], list[tuple[str, str]]]


class MqttDevice:
    """Implements ``edge.device.DeviceSource`` for one MQTT device."""

    def __init__(
        self,
        *,
        config: DeviceConfig,
        profile: MqttProfile,
        session: MqttLink | None,
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
        self._extractors = {  # full topic -> the rules of the points it carries
            self._full(sub): Extractor(profile.points_on(sub)) for sub in profile.topics
        }
        # full topic -> its readings' shapes, resolved once: (measurement, tags, the points
        # that fill its fields as (point, field key)), in the order of the profile's points
        self._shapes: dict[str, list[_Shape]] = {}
        for sub in profile.topics:
            shapes: dict[tuple[str, tuple[tuple[str, str], ...]], _Shape] = {}
            for p in profile.points_on(sub):
                if p.measurement is None or p.field is None:
                    continue
                tags = tuple(sorted(profile.tags_for(p, config.zone).items()))
                shape = shapes.setdefault(
                    (p.measurement, tags), (schema.measurement(p.measurement), dict(tags), [])
                )
                shape[2].append((p.id, p.field))
            self._shapes[self._full(sub)] = list(shapes.values())

    def _full(self, sub: str | None) -> str:
        return self._topic if sub is None else f"{self._topic}/{sub}"

    @property
    def device_id(self) -> str:
        return self._config.id

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic this device's readings arrive on."""
        return tuple(self._extractors)

    def intervals(self) -> Mapping[str, float]:
        return {}

    def describe_plan(self) -> str:
        """'axis: MQTT axis/.../ObjectAnalytics/{Device1Scenario1,Device1Scenario2} (2 points)'"""
        readable = sum(1 for p in self._profile.points if p.measurement is not None)
        subs = self._profile.topics
        where = [self._topic] if None in subs else []
        named = [s for s in subs if s is not None]
        if named:
            where.append(
                f"{self._topic}/" + (named[0] if len(named) == 1 else "{" + ",".join(named) + "}")
            )
        return (
            f"{self.device_id}: MQTT {', '.join(where)} ({readable} point{'s' * (readable != 1)})"
        )

    async def poll(self, groups: Collection[str]) -> PollResult:
        return PollResult()

    def readings(
        self, payload: bytes, topic: str | None = None
    ) -> tuple[list[Reading], dict[str, str]]:
        """Readings from one message on ``topic`` (default: the device's topic), and the
        points refused with their reasons.

        Raises PayloadError when the whole message is refused.
        """
        full = self._topic if topic is None else topic
        extractor = self._extractors.get(full)
        if extractor is None:
            raise PayloadError("unexpected topic", f"{topic} carries no point of {self.device_id}")
        doc = parse(payload, max_bytes=self._profile.max_bytes, max_depth=self._profile.max_depth)
        got = extractor.extract(doc)
        values = got.values
        now = self._clock.now()
        readings = []
        for measurement, tags, members in self._shapes[full]:
            fields = {key: values[point] for point, key in members if point in values}
            if fields:
                readings.append(
                    Reading(
                        branch=self._branch,
                        device=self.device_id,
                        measurement=measurement,
                        fields=fields,
                        tags=tags,
                        time=now,
                    )
                )
        return readings, dict(got.problems)

    def _handle(
        self, accept: Accept, reject: Reject, topic: str, payload: bytes, retained: bool
    ) -> None:
        """One message, on the loop's thread. Never raises."""
        if retained:
            reject(topic, "retained: a stored message of unknown time")
            return
        try:
            readings, problems = self.readings(payload, topic)
        except PayloadError as exc:
            reject(topic, str(exc))
            return
        except ValueError as exc:  # a value the schema refuses
            reject(topic, f"schema: {exc}")
            return
        except Exception as exc:  # a bug here must not stop the device's other messages
            log.exception("%s: failed on a message on %s", self.device_id, topic)
            reject(topic, f"internal error: {type(exc).__name__}")
            return
        for reason in problems.values():
            reject(topic, reason)
        if readings:
            try:
                accept(readings)
            except Exception:
                log.exception("%s: readings from %s were not accepted", self.device_id, topic)

    async def listen(self, accept: Accept, reject: Reject) -> None:
        """Subscribe to the device's topics and deliver readings until cancelled."""
        if self._session is None:
            raise DeviceError(
                f"{self.device_id}: an MQTT device needs an mqtt section (the broker)"
            )
        for topic in self.topics:
            self._session.subscribe(
                topic,
                lambda t, p, r: self._handle(accept, reject, t, p, r),
            )
        await asyncio.Event().wait()  # until cancelled

    async def write(self, command: Command) -> Value:
        """Publish the command to the device's set topic (Zigbee2MQTT style: ``<topic>/set``
        with ``{"state": "LOCK"}``). MQTT has no read-back: the device's next state message
        confirms it, and returns the commanded value."""
        if command.expired(self._clock.now()):
            raise CommandError(f"{self.device_id}.{command.point}: expired, not carried out")
        try:
            point = self._profile.point(command.point)
        except ProfileError as exc:
            raise CommandError(f"{self.device_id}: {exc}") from None
        if not point.writable or self._profile.set_topic is None:
            raise CommandError(f"{self.device_id}.{point.id} is not writable")
        if self._session is None or not self._session.connected:
            # never queued for later: a late unlock is worse than none
            raise DeviceUnreachable(f"{self.device_id}: MQTT broker not connected")
        raw: object = command.value
        if point.map is not None:
            reverse = {v: k for k, v in point.map.items() if type(v) is type(command.value)}
            if command.value not in reverse:
                raise CommandError(f"{self.device_id}.{point.id}: {command.value!r} is not mapped")
            key = reverse[command.value]
            raw = json.loads(key) if key in ("true", "false") else key
        message: dict[str, object] = {}
        node = message
        *parents, last = point.path.split(".")
        for part in parents:
            child: dict[str, object] = {}
            node[part] = child
            node = child
        node[last] = raw
        self._session.publish(f"{self._topic}/{self._profile.set_topic}", json.dumps(message))
        return command.value

    async def close(self) -> None:
        return None
