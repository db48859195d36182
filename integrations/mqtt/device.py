"""An MQTT device as the gateway sees it: it pushes; every good message becomes readings.

Messages are stamped with the gateway's clock (UTC) when they arrive. Retained messages are
refused (their time is unknown); so is every bad payload, with a reason naming the topic,
counted by the coordinator. Nothing a device sends can stop the gateway: the message handler
never raises.

Commands are confirmed by the device itself: ``write`` publishes the set message and waits
(``confirm_timeout`` of the profile, on the gateway's clock) for a state message whose value
for the point is the commanded one, and returns what the device reported; without one it
raises ``NotConfirmed``. The handler keeps each point's last reported value with its arrival
time, which ``read_point`` returns, so the reconciler can re-verify an actuator later.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Mapping
from datetime import datetime

from openbranch.edge.core import schema
from openbranch.edge.core.aio import cancel_and_wait
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.command import Command, CommandError
from openbranch.edge.core.config import DeviceConfig, MqttTransport
from openbranch.edge.core.device import (
    Accept,
    DeviceError,
    DeviceUnreachable,
    NotConfirmed,
    PollResult,
    Reject,
    Series,
    agrees,
)
from openbranch.edge.core.messaging import MqttLink
from openbranch.edge.core.reading import Reading, Value
from openbranch.integrations.mqtt.payload import Extractor, PayloadError, parse
from openbranch.integrations.mqtt.profile import MqttProfile
from openbranch.integrations.profile import ProfileError

__all__ = ["MqttDevice"]

log = logging.getLogger(__name__)


_Shape = tuple[schema.Measurement, dict[str, str], list[tuple[str, str]]]


class MqttDevice:
    """Implements ``edge.device.DeviceSource`` and ``edge.device.PointReader`` for one MQTT
    device."""

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
        self._reported: dict[str, tuple[Value, datetime]] = {}  # point -> value, arrival
        # point -> the writes waiting for it: (the commanded value, resolved with the report)
        self._waiting: dict[str, list[tuple[Value, asyncio.Future[Value]]]] = {}

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

    def deadbands(self) -> Mapping[Series, float]:
        """Implements ``edge.device.Deadbands``: the profile's."""
        return self._profile.deadbands()

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
        readings, problems, _values = self._decode(payload, topic, self._clock.now())
        return readings, problems

    def _decode(
        self, payload: bytes, topic: str | None, now: datetime
    ) -> tuple[list[Reading], dict[str, str], Mapping[str, Value]]:
        """``readings``, and the value of each point the message carried."""
        full = self._topic if topic is None else topic
        extractor = self._extractors.get(full)
        if extractor is None:
            raise PayloadError("unexpected topic", f"{topic} carries no point of {self.device_id}")
        doc = parse(payload, max_bytes=self._profile.max_bytes, max_depth=self._profile.max_depth)
        got = extractor.extract(doc)
        values = got.values
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
        return readings, dict(got.problems), values

    def _handle(
        self, accept: Accept, reject: Reject, topic: str, payload: bytes, retained: bool
    ) -> None:
        """One message, on the loop's thread. Never raises."""
        if retained:
            reject(topic, "retained: a stored message of unknown time")
            return
        try:
            now = self._clock.now()
            readings, problems, values = self._decode(payload, topic, now)
            self._report(values, now)
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

    def _report(self, values: Mapping[str, Value], now: datetime) -> None:
        """Keep what the device reported; a waiting write whose value came is confirmed."""
        for point, value in values.items():
            self._reported[point] = (value, now)
            for wanted, waiter in self._waiting.get(point, ()):
                if not waiter.done() and agrees(value, wanted):
                    waiter.set_result(value)

    def reported(self, point: str) -> tuple[Value, datetime] | None:
        """The value the device last reported for ``point`` and when it arrived (gateway
        time), or None before its first message."""
        return self._reported.get(point)

    async def read_point(self, point: str) -> Value:
        """Implements ``edge.device.PointReader``: the value the device last reported.

        MQTT has no read request; a device publishes its state on every change (Zigbee2MQTT
        publishes the whole state), so its last message is its current state as far as anyone
        can know. Raises DeviceError before its first message."""
        try:
            self._profile.point(point)
        except ProfileError as exc:
            raise CommandError(f"{self.device_id}: {exc}") from None
        got = self._reported.get(point)
        if got is None:
            raise DeviceError(f"{self.device_id}.{point}: no state reported yet")
        return got[0]

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
        with ``{"state": "LOCK"}``), then wait for the device's state message that reports the
        commanded value, and return the value it reported.

        MQTT has no read-back: only a message published after the command counts (one that
        was on its way with the commanded value counts too, for it tells the same state).
        Messages with another value are waited past (a lock reports its old state first).
        Raises NotConfirmed when none came within the profile's ``confirm_timeout`` seconds
        of the gateway's clock, DeviceUnreachable when the broker is not connected."""
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
        waiter: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        entry = (command.value, waiter)
        waiting = self._waiting.setdefault(point.id, [])
        waiting.append(entry)
        timeout = self._profile.confirm_timeout
        try:
            self._session.publish(f"{self._topic}/{self._profile.set_topic}", json.dumps(message))
            timer = asyncio.ensure_future(self._clock.sleep(timeout))
            try:
                await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_and_wait((timer,))
        finally:
            waiting.remove(entry)
            if not waiting:
                self._waiting.pop(point.id, None)
        if waiter.done():
            return waiter.result()
        heard = self._reported.get(point.id)
        said = "nothing" if heard is None else f"{heard[0]!r} at {heard[1]:%H:%M:%S}"
        raise NotConfirmed(
            f"{self.device_id}.{point.id}: no state message with {command.value!r} within "
            f"{timeout:g} s (last reported: {said})"
        )

    async def close(self) -> None:
        return None
