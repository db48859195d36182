"""A card reader (+ PIN pad) on MQTT: an ``MqttDevice`` whose presentations go to the entry
flow (``edge.core.admission.CardReader``), never into readings.

A presentation is a JSON object (the profile's ``reader.card`` and ``reader.pin`` paths) on
the reader's presentation topic. A retained one is refused (it is stale: a card held to the
reader some time ago must not open the door now), and so is one without a card; a refusal is
logged with its kind only, never with the payload (it holds a card number). The answer goes
to the reader's state topic as JSON: ``{"admit", "reason", "da", "en", "time"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from openbranch.edge.core.admission import Presentation, ReaderMessage
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.config import DeviceConfig
from openbranch.edge.core.device import DeviceError
from openbranch.edge.core.messaging import MqttLink
from openbranch.integrations.mqtt.device import MqttDevice
from openbranch.integrations.mqtt.payload import PayloadError, parse
from openbranch.integrations.mqtt.profile import MqttProfile, MqttReaderSpec

__all__ = ["MqttReader", "presentation_of"]

log = logging.getLogger(__name__)

MAX_CARD = 64  # characters: a card number or a PIN longer than this is not one


def _at(doc: dict[str, Any], path: str) -> object:
    node: object = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if 0 < len(text) <= MAX_CARD and text.isprintable() else None


def presentation_of(spec: MqttReaderSpec, reader: str, payload: bytes) -> Presentation:
    """The card and PIN in ``payload``; PayloadError (with a kind, never the values) when it
    holds none."""
    doc = parse(payload, max_bytes=4096, max_depth=8)
    card = _text(_at(doc, spec.card))
    if card is None:
        raise PayloadError("missing field", f"no card number at {spec.card}")
    pin = None
    if spec.pin is not None and _at(doc, spec.pin) is not None:
        pin = _text(_at(doc, spec.pin))
        if pin is None:
            raise PayloadError("wrong type", f"the PIN at {spec.pin} is not digits or text")
    return Presentation(reader=reader, card=card, pin=pin)


class MqttReader(MqttDevice):
    """An MQTT card reader: a device (its other points, such as a door contact, are readings)
    and an ``edge.core.admission.CardReader``."""

    def __init__(
        self,
        *,
        config: DeviceConfig,
        profile: MqttProfile,
        session: MqttLink | None,
        branch: str,
        clock: Clock,
    ) -> None:
        super().__init__(
            config=config, profile=profile, session=session, branch=branch, clock=clock
        )
        assert profile.reader is not None
        self._spec = profile.reader
        self.refused = 0  # presentations that were not one (counted, never logged in full)

    def describe_plan(self) -> str:
        return (
            f"{super().describe_plan()}; card reader on {self.presentation_topic}, "
            f"answers on {self.state_topic}"
        )

    @property
    def presentation_topic(self) -> str:
        sub = self._spec.topic
        return self.topic if sub is None else f"{self.topic}/{sub}"

    @property
    def state_topic(self) -> str:
        return f"{self.topic}/{self._spec.state_topic}"

    async def presentations(self, deliver: Callable[[Presentation], None]) -> None:
        """Subscribe to the presentation topic and deliver each presentation until cancelled."""
        if self._session is None:
            raise DeviceError(f"{self.device_id}: a card reader needs an mqtt section")
        self._session.subscribe(
            self.presentation_topic,
            lambda _topic, payload, retained: self._presented(deliver, payload, retained),
        )
        await asyncio.Event().wait()  # until cancelled

    def _presented(
        self, deliver: Callable[[Presentation], None], payload: bytes, retained: bool
    ) -> None:
        if retained:
            self._refuse("retained: a stale presentation")
            return
        try:
            presentation = presentation_of(self._spec, self.device_id, payload)
        except PayloadError as exc:
            self._refuse(exc.kind)
            return
        deliver(
            Presentation(
                reader=presentation.reader,
                card=presentation.card,
                pin=presentation.pin,
                at=self._clock.now(),
            )
        )

    def _refuse(self, kind: str) -> None:
        self.refused += 1
        log.warning("%s: a presentation was refused: %s", self.device_id, kind)

    def show(self, message: ReaderMessage) -> None:
        if self._session is None:
            return
        self._session.publish(
            self.state_topic,
            json.dumps(
                {
                    "admit": message.admit,
                    "reason": message.reason.value,
                    "da": message.da,
                    "en": message.en,
                    "time": message.at.isoformat(),
                },
                ensure_ascii=False,
            ),
        )
