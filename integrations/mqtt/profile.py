"""MQTT device profiles: which JSON value of a device's messages is which schema field.

A point names a dotted path into the JSON payload (``contact``, ``counts.in``, ``lines.0.fw``:
a number selects a list item), the JSON type it must have, and optionally a ``map`` from raw
values to the field's value (Zigbee2MQTT's ``"LOCK"`` to ``true``, ``true`` to ``false`` for a
contact sensor whose ``contact: true`` means closed).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edge import schema
from integrations.profile import Catalogue, Point, Profile

__all__ = ["CATALOGUE", "JsonType", "MqttPoint", "MqttProfile"]

JsonType = Literal["number", "integer", "boolean", "string"]
MapValue = bool | int | float | str

_FIELD_TYPE_OF: dict[schema.FieldType, tuple[type, ...]] = {
    schema.FieldType.BOOL: (bool,),
    schema.FieldType.INT: (int,),
    schema.FieldType.FLOAT: (int, float),
    schema.FieldType.STRING: (str,),
}


class MqttPoint(Point):
    path: str = Field(pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
    json_type: JsonType
    map: dict[str, MapValue] | None = Field(
        default=None, description="raw value (as text: 'true', 'LOCK', '3') -> field value"
    )
    scale: float = 1.0
    required: bool = Field(default=True, description="a message without it is refused")
    ignore: list[str] = Field(
        default_factory=list, description="raw values that are normal but carry no reading"
    )

    @model_validator(mode="after")
    def _fits_field(self) -> MqttPoint:
        target = self.schema_field
        if target is None:
            return self
        where = f"point {self.id}"
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
        return self


class MqttProfile(Profile[MqttPoint]):
    set_topic: str | None = Field(
        default=None, description="suffix of the topic that takes commands, e.g. 'set'"
    )
    max_bytes: int = Field(default=65536, ge=64, description="larger messages are refused")
    max_depth: int = Field(default=32, ge=1, description="deeper JSON is refused")


CATALOGUE: Catalogue[MqttProfile] = Catalogue(MqttProfile, "integrations.mqtt")
