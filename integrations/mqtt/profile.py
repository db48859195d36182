"""MQTT device profiles: which JSON value of a device's messages is which schema field.

A point names a dotted path into the JSON payload (``contact``, ``counts.in``, ``lines.0.fw``:
a number selects a list item), the JSON type it must have, and optionally a ``map`` from raw
values to the field's value (Zigbee2MQTT's ``"LOCK"`` to ``true``, ``true`` to ``false`` for a
contact sensor whose ``contact: true`` means closed).

Topics: a device's messages arrive on the topic of its config (``transport.topic``). A product
that publishes on several topics names them per point as a ``topic`` below the device's topic
(Axis: one sub-topic per analytics scenario). ``examples`` are messages quoted from the
datasheet with the values they must give: the catalogue tests decode every one, and the
simulator publishes in their shape.

Commands: a profile with a ``set_topic`` takes commands on ``<topic>/<set_topic>``; a command
is confirmed by the device's next state message carrying the commanded value, within
``confirm_timeout`` seconds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openbranch.edge.core import schema
from openbranch.integrations.profile import Catalogue, Point, Profile

__all__ = ["CATALOGUE", "JsonType", "MqttExample", "MqttPoint", "MqttProfile", "MqttReaderSpec"]

JsonType = Literal["number", "integer", "boolean", "string"]
MapValue = bool | int | float | str

_SEGMENT = r"[A-Za-z0-9_\-]+"

_FIELD_TYPE_OF: dict[schema.FieldType, tuple[type, ...]] = {
    schema.FieldType.BOOL: (bool,),
    schema.FieldType.INT: (int,),
    schema.FieldType.FLOAT: (int, float),
    schema.FieldType.STRING: (str,),
}


class MqttPoint(Point):
    path: str = Field(pattern=rf"^{_SEGMENT}(\.{_SEGMENT})*$")
    topic: str | None = Field(
        default=None,
        pattern=rf"^{_SEGMENT}(/{_SEGMENT})*$",
        description="sub-topic below the device's topic that carries this point (default: none)",
    )
    json_type: JsonType
    quoted: bool = Field(
        default=False,
        description='a number sent as a JSON string, e.g. Axis event data\'s "20960"',
    )
    map: dict[str, MapValue] | None = Field(
        default=None, description="raw value (as text: 'true', 'LOCK', '3') -> field value"
    )
    scale: float = 1.0
    required: bool = Field(default=True, description="a message without it is refused")
    ignore: list[str] = Field(
        default_factory=list, description="raw values that are normal but carry no reading"
    )
    event: bool = Field(
        default=False,
        description="each message is a new event (a button press), not a repeated state",
    )

    @model_validator(mode="after")
    def _fits_field(self) -> MqttPoint:
        where = f"point {self.id}"
        if self.quoted and self.json_type not in ("number", "integer"):
            raise ValueError(f"{where}: only numbers can be quoted")
        target = self.schema_field
        if target is None:
            return self
        if self.map is not None:
            for raw, value in self.map.items():
                ok = isinstance(value, _FIELD_TYPE_OF[target.type]) and not (
                    isinstance(value, bool) and target.type is not schema.FieldType.BOOL
                )
                if not ok:
                    raise ValueError(f"{where}: map {raw!r} -> {value!r} is not a {target.type}")
                if target.choices and value not in target.choices:
                    raise ValueError(f"{where}: map value {value!r} is not in {target.choices}")
            return self
        expected = {
            schema.FieldType.BOOL: ("boolean",),
            schema.FieldType.INT: ("integer",),
            schema.FieldType.FLOAT: ("number", "integer"),
            schema.FieldType.STRING: ("string",),
        }[target.type]
        if self.json_type not in expected:
            raise ValueError(
                f"{where}: {self.measurement}.{self.field} is {target.type}; "
                f"json_type {self.json_type} needs a map"
            )
        if target.type is schema.FieldType.INT and self.scale != 1:
            raise ValueError(f"{where}: {self.measurement}.{self.field} is an integer field")
        if target.choices:
            raise ValueError(f"{where}: {self.measurement}.{self.field} has choices; map them")
        return self


class MqttExample(BaseModel):
    """A message quoted from the datasheet, and the point values it must give."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str | None = Field(default=None, description="the sub-topic it arrives on")
    payload: str = Field(min_length=2, description="the JSON text as the device publishes it")
    values: dict[str, MapValue] = Field(description="point id -> value; absent points: none")


class MqttReaderSpec(BaseModel):
    """A card reader (+ PIN pad): where a presentation arrives and where the answer goes.

    A presentation is a JSON object on ``<topic>/<topic>`` (or the device's topic) with the
    card number at ``card`` and the PIN typed at ``pin``; it never becomes a reading. The
    gateway's answer (admit, reason, Danish and English text) goes to ``<topic>/<state_topic>``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str | None = Field(
        default=None,
        pattern=rf"^{_SEGMENT}(/{_SEGMENT})*$",
        description="sub-topic of the presentations (default: the device's topic)",
    )
    card: str = Field(pattern=rf"^{_SEGMENT}(\.{_SEGMENT})*$", description="path of the card")
    pin: str | None = Field(
        default=None, pattern=rf"^{_SEGMENT}(\.{_SEGMENT})*$", description="path of the PIN"
    )
    state_topic: str = Field(
        default="display",
        pattern=rf"^{_SEGMENT}(/{_SEGMENT})*$",
        description="sub-topic the gateway publishes each answer on, for the reader to show",
    )


class MqttProfile(Profile[MqttPoint]):
    payload: Literal["json"] = Field(default="json", description="the payload format")
    set_topic: str | None = Field(
        default=None, description="suffix of the topic that takes commands, e.g. 'set'"
    )
    confirm_timeout: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="seconds (gateway time) a command waits for the state message that "
        "confirms it; a motor lock on a Zigbee mesh answers in 1-3 s",
    )
    max_bytes: int = Field(default=65536, ge=64, description="larger messages are refused")
    max_depth: int = Field(default=32, ge=1, description="deeper JSON is refused")
    examples: list[MqttExample] = Field(default_factory=list)
    reader: MqttReaderSpec | None = Field(
        default=None, description="the device is a card reader (self-service entry)"
    )

    @model_validator(mode="after")
    def _examples_fit(self) -> MqttProfile:
        topics = self.topics
        for i, example in enumerate(self.examples):
            if example.topic not in topics:
                raise ValueError(f"examples[{i}]: no point is on topic {example.topic!r}")
            for point_id in example.values:
                self.point(point_id)  # raises for an unknown point
        return self

    @property
    def topics(self) -> tuple[str | None, ...]:
        """The sub-topics its points arrive on (None: the device's own topic), in order."""
        return tuple(dict.fromkeys(p.topic for p in self.points if p.measurement is not None))

    def points_on(self, topic: str | None) -> list[MqttPoint]:
        return [p for p in self.points if p.topic == topic]


CATALOGUE: Catalogue[MqttProfile] = Catalogue(MqttProfile, "openbranch.integrations.mqtt")
