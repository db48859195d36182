"""What every device profile shares, whatever the protocol: identity, datasheet, and points that
say what they mean in the shared vocabulary (``edge.schema``).

A device model is data: one YAML file per model under ``integrations/<protocol>/profiles/``.
Protocol folders subclass ``Profile`` and ``Point`` with where-to-find-it details.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openbranch.edge.core import schema
from openbranch.edge.core.device import PointInfo, Series
from openbranch.edge.core.yamlsource import ConfigError, Problem, parse_yaml, validate

__all__ = ["Catalogue", "Point", "Profile", "ProfileError"]


class ProfileError(ValueError):
    """A profile that is unknown or does not fit how it is used."""


class Point(BaseModel):
    """One value of a device and its meaning.

    A point either feeds a schema field (``measurement`` + ``field`` + ``unit``) or is an
    actuator only (``writable`` with no measurement), such as a lock relay.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_]*$")
    description: str = ""
    measurement: str | None = None
    field: str | None = None
    unit: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    group: str = "default"
    writable: bool = False
    deadband: float = Field(
        default=0.0,
        ge=0,
        description="report by exception: a change of at most this much (in the point's unit) "
        "from the last written value is not written; 0: any change is",
    )

    @model_validator(mode="after")
    def _meaning(self) -> Point:
        if self.measurement is None:
            if self.field is not None or self.unit is not None:
                raise ValueError(f"point {self.id}: a field or unit needs a measurement")
            if not self.writable:
                raise ValueError(f"point {self.id}: a read-only point needs a measurement")
            return self
        m = schema.measurement(self.measurement)
        if self.field is None:
            raise ValueError(f"point {self.id}: measurement {m.name} needs a field")
        f = m.field(self.field)
        if f.units and self.unit not in f.units:
            raise ValueError(
                f"point {self.id}: {m.name}.{f.key} is in {' or '.join(f.units)}, not {self.unit}"
            )
        if not f.units and self.unit is not None:
            raise ValueError(f"point {self.id}: {m.name}.{f.key} has no unit, got {self.unit}")
        for key in self.tags:
            if key not in {t.value for t in m.tags} - {schema.Tag.BRANCH, schema.Tag.DEVICE}:
                raise ValueError(f"point {self.id}: measurement {m.name} has no tag {key!r}")
        numeric = f.type in (schema.FieldType.FLOAT, schema.FieldType.INT)
        if self.deadband and (f.counter or not numeric):
            what = "a counter: every change of it is written" if f.counter else f"a {f.type}"
            raise ValueError(f"point {self.id}: {m.name}.{f.key} is {what}; it has no deadband")
        return self

    @property
    def schema_field(self) -> schema.Field | None:
        if self.measurement is None or self.field is None:
            return None
        return schema.measurement(self.measurement).field(self.field)


P = TypeVar("P", bound=Point)


class Profile(BaseModel, Generic[P]):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    manufacturer: str
    model: str
    datasheet: str = Field(min_length=10, description="the document this map follows")
    description: str = ""
    tags: dict[str, str] = Field(
        default_factory=dict, description="tags on every reading, such as carrier"
    )
    points: list[P] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_points(self) -> Profile[P]:
        seen: set[str] = set()
        for point in self.points:
            if point.id in seen:
                raise ValueError(f"point id {point.id!r} appears twice")
            seen.add(point.id)
        carrier = self.tags.get(schema.Tag.CARRIER)
        if carrier is not None and carrier not in {c.value for c in schema.Carrier}:
            raise ValueError(
                f"carrier {carrier!r} is not one of {[c.value for c in schema.Carrier]}"
            )
        return self

    def point(self, point_id: str) -> P:
        for point in self.points:
            if point.id == point_id:
                return point
        raise ProfileError(f"profile {self.id} has no point {point_id!r}")

    def tags_for(self, point: Point, zone: str | None) -> dict[str, str]:
        """Tags of a point's readings: the profile's tags the measurement has, the device's
        zone where the measurement has a zone, then the point's own tags."""
        if point.measurement is None:
            return {}
        allowed = {t.value for t in schema.measurement(point.measurement).tags}
        tags = {k: v for k, v in self.tags.items() if k in allowed}
        if zone is not None and schema.Tag.ZONE.value in allowed:
            tags[schema.Tag.ZONE.value] = zone
        tags.update(point.tags)
        return tags

    def deadbands(self) -> dict[Series, float]:
        """Per (measurement, field), the deadband of the points behind it (the smallest,
        when points of different tags feed one field); fields without one are left out."""
        out: dict[Series, float] = {}
        for p in self.points:
            if p.measurement is not None and p.field is not None and p.deadband:
                series = (p.measurement, p.field)
                out[series] = min(p.deadband, out.get(series, p.deadband))
        return out

    def point_infos(self) -> tuple[PointInfo, ...]:
        """Every point and its meaning, as simulators describe themselves to scenarios."""
        return tuple(
            PointInfo(
                id=p.id,
                measurement=p.measurement,
                field=p.field,
                tags=self.tags_for(p, None),
                writable=p.writable,
            )
            for p in self.points
        )

    @property
    def groups(self) -> frozenset[str]:
        return frozenset(p.group for p in self.points)


T = TypeVar("T", bound=Profile[Any])


class Catalogue(Generic[T]):
    """Every profile of one protocol, loaded from the YAML files of a package folder."""

    def __init__(self, model: type[T], package: str, folder: str = "profiles") -> None:
        self._model = model
        self._root = resources.files(package).joinpath(folder)
        self._profiles: dict[str, T] | None = None

    def files(self) -> Iterator[Traversable]:
        return iter(
            sorted(
                (f for f in self._root.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name
            )
        )

    def load(self, file: Traversable) -> T:
        doc = parse_yaml(file.read_text(encoding="utf-8"), name=f"{self._root.name}/{file.name}")
        profile = validate(self._model, doc)
        if file.name != f"{profile.id}.yaml":
            raise doc.error(("id",), f"profile id {profile.id!r} must match its file name")
        return profile

    def all(self) -> dict[str, T]:
        if self._profiles is None:
            profiles: dict[str, T] = {}
            problems: list[Problem] = []
            for file in self.files():
                try:
                    profile = self.load(file)
                except ConfigError as exc:
                    problems.extend(exc.problems)
                    continue
                profiles[profile.id] = profile
            if problems:
                raise ConfigError(problems)
            self._profiles = profiles
        return self._profiles

    def get(self, profile_id: str) -> T:
        profiles = self.all()
        if profile_id not in profiles:
            raise ProfileError(
                f"unknown profile {profile_id!r} (known: {', '.join(sorted(profiles))})"
            )
        return profiles[profile_id]
