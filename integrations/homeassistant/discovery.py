"""Home Assistant MQTT discovery configs from a gateway config, its devices' profiles and the
schema. Pure: config in, ``{topic: payload}`` out.

Topics: ``{discovery_prefix}/{platform}/openbranch_{branch}/{device}_{entity}/config``, one
node per branch gateway. Every entity reads the gateway's retained state topic of its device
(``{prefix}/{branch}/{device}/state``, see edge/gateway.py ``state_key``) and is available
while both the gateway (``{prefix}/{branch}/status``) and its device
(``{prefix}/{branch}/{device}/availability``) say ``online``.

Identities: ``unique_id`` is ``openbranch:{branch}:{device}:{entity}`` and a device's
identifier ``openbranch:{branch}:{device}`` (the gateway: ``openbranch:{branch}``). Ids may hold
``_`` and ``-`` but never ``:``, so two branches or devices can never produce the same one.

Errors: ``DiscoveryError`` (a ``ValueError``) when two entities of one gateway would share a
topic or a unique id.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from openbranch.edge.core import schema
from openbranch.edge.core.config import DeviceConfig, GatewayConfig, MqttConfig
from openbranch.edge.core.messaging import Topics, state_key
from openbranch.edge.core.schema import GATEWAY_DEVICE
from openbranch.integrations.homeassistant.entity import Category, Kind, Platform, kind_of
from openbranch.integrations.homeassistant.profiles import profile_for
from openbranch.integrations.profile import Point, Profile

__all__ = [
    "DiscoveryError",
    "Entity",
    "alert_entity",
    "discovery",
    "entities",
    "node_id",
]

ORIGIN = "OpenBranch"
SUPPORT_URL = "https://github.com/openbranch/openbranch"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_ALERT_OBJECT = f"{schema.ALERT.name}_"  # object ids of the gateway's alert entities

ProfileLookup = Callable[[DeviceConfig], Profile[Any]]


class DiscoveryError(ValueError):
    """Two entities of one gateway would share a discovery topic or a unique id."""


@dataclass(frozen=True, slots=True)
class Entity:
    """One discovery config: where it goes and what it says."""

    topic: str
    payload: Mapping[str, Any]

    @property
    def unique_id(self) -> str:
        return str(self.payload["unique_id"])

    def encode(self) -> bytes:
        return json.dumps(self.payload, sort_keys=True, ensure_ascii=False).encode()


def node_id(branch: str) -> str:
    """The discovery node of a branch gateway: every topic of its entities has it."""
    return f"openbranch_{branch}"


@functools.cache
def _version() -> str:
    """Read once: an alert's entity is built when the alert is raised, and an alert may be
    that the process has no file descriptor left to read the package's metadata with."""
    try:
        return version("openbranch")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _pretty(text: str) -> str:
    return text.replace("_", " ").replace("-", " ").strip().capitalize()


def _template(key: str, field: str, kind: Kind) -> str:
    """Jinja that takes one value out of the state JSON; ``None`` (unknown) while absent."""
    get = f"value_json.get({json.dumps(key)}, {{}}).get({json.dumps(field)})"
    if kind.platform is Platform.BINARY_SENSOR:
        on, off = ("OFF", "ON") if kind.inverted else ("ON", "OFF")
        return f"{{% set v = {get} %}}{{{{ 'None' if v is none else ('{on}' if v else '{off}') }}}}"
    return f"{{{{ {get} }}}}"


class _Builder:
    def __init__(self, config: GatewayConfig, *, discovery_prefix: str | None = None) -> None:
        self.config = config
        self.branch = config.branch
        self.prefix = discovery_prefix or config.homeassistant.discovery_prefix
        self.topics = Topics((config.mqtt or MqttConfig()).topic_prefix, config.branch.id)
        self.node = node_id(config.branch.id)
        self.gateway_ids = [f"openbranch:{self.branch.id}"]
        self.origin = {"name": ORIGIN, "sw_version": _version(), "support_url": SUPPORT_URL}

    def gateway_device(self) -> dict[str, Any]:
        return {
            "identifiers": self.gateway_ids,
            "name": f"{self.branch.name} gateway",
            "manufacturer": ORIGIN,
            "model": "Edge gateway",
            "sw_version": _version(),
            "suggested_area": self.branch.name,
        }

    def device(self, device: DeviceConfig, profile: Profile[Any]) -> dict[str, Any]:
        return {
            "identifiers": [f"openbranch:{self.branch.id}:{device.id}"],
            "name": device.name or device.id,
            "manufacturer": profile.manufacturer,
            "model": profile.model,
            "model_id": profile.id,
            "suggested_area": self.branch.name,
            "via_device": self.gateway_ids[0],
        }

    def availability(self, device: str | None) -> list[dict[str, str]]:
        topics = [self.topics.status]
        if device is not None:
            topics.append(self.topics.availability(device))
        return [
            {"topic": t, "payload_available": "online", "payload_not_available": "offline"}
            for t in topics
        ]

    def entity(
        self,
        *,
        device_id: str,
        key: str,
        name: str,
        kind: Kind,
        series: str,
        field: str,
        unit: str | None,
        device: dict[str, Any],
        own_availability: bool,
    ) -> Entity:
        object_id = _UNSAFE.sub("_", f"{device_id}_{key}")
        payload: dict[str, Any] = {
            "name": name,
            "unique_id": f"openbranch:{self.branch.id}:{device_id}:{key}",
            "state_topic": self.topics.state(device_id),
            "value_template": _template(series, field, kind),
            "availability": self.availability(device_id if own_availability else None),
            "availability_mode": "all",
            "device": device,
            "origin": self.origin,
        }
        if kind.device_class is not None:
            payload["device_class"] = kind.device_class
        if kind.state_class is not None:
            payload["state_class"] = kind.state_class
        if unit is not None:
            payload["unit_of_measurement"] = unit
        if kind.options:
            payload["options"] = list(kind.options)
        if kind.category is not None:
            payload["entity_category"] = kind.category.value
        if kind.platform is Platform.BINARY_SENSOR:
            payload["payload_on"], payload["payload_off"] = "ON", "OFF"
        return Entity(f"{self.prefix}/{kind.platform}/{self.node}/{object_id}/config", payload)


def _point_entity(
    builder: _Builder,
    device: DeviceConfig,
    profile: Profile[Any],
    point: Point,
    block: dict[str, Any],
) -> Entity | None:
    if point.measurement is None or point.field is None:
        return None  # an actuator only
    kind = kind_of(point.measurement, point.field)
    if kind is None:
        return None
    tags = profile.tags_for(point, device.zone)
    shown = kind.field or schema.measurement(point.measurement).field(point.field)
    unit = kind.unit or point.unit
    if kind.field is schema.ENERGY_TOTAL and unit == "m³":  # a water meter: a volume
        kind = Kind(
            platform=kind.platform,
            name="Water",
            device_class="water",
            state_class=kind.state_class,
            field=kind.field,
        )
    own = [
        v
        for t, v in tags.items()
        if t in (schema.Tag.PHASE, schema.Tag.KIND)
        or (t == schema.Tag.ZONE and point.tags.get(t) == v)
    ]
    if point.measurement == schema.ALERT.name and own:
        name = _pretty(" ".join(own))  # "Help call", "Fire alarm"
    else:
        name = " ".join(
            [kind.name, *(v.upper() if v[:1] == "l" and v[1:].isdigit() else v for v in own)]
        )
    key = (
        point.id
        if kind.field is None or kind.field.key == point.field
        else f"{point.id}_{kind.field.key}"
    )
    return builder.entity(
        device_id=device.id,
        key=key,
        name=name,
        kind=kind,
        series=state_key(point.measurement, tags),
        field=shown.key,
        unit=unit,
        device=block,
        own_availability=True,
    )


def _gateway_entities(builder: _Builder) -> Iterator[Entity]:
    block = builder.gateway_device()
    status = Entity(
        f"{builder.prefix}/{Platform.BINARY_SENSOR}/{builder.node}/{GATEWAY_DEVICE}_status/config",
        {
            "name": "Connected",
            "unique_id": f"openbranch:{builder.branch.id}:{GATEWAY_DEVICE}:status",
            "state_topic": builder.topics.status,
            "payload_on": "online",
            "payload_off": "offline",
            "device_class": "connectivity",
            "entity_category": Category.DIAGNOSTIC.value,
            "device": block,
            "origin": builder.origin,
        },
    )
    yield status
    own: list[tuple[schema.Measurement, schema.Field]] = [
        (schema.BRANCH_MODE, schema.BRANCH_MODE_MODE),
        (schema.OCCUPANCY, schema.OCCUPANCY_PRESENT),
        *((schema.GATEWAY, f) for f in schema.GATEWAY),
    ]
    for measurement, field in own:
        kind = kind_of(measurement.name, field.key)
        assert kind is not None, f"{measurement.name}.{field.key} has no entity kind"
        yield builder.entity(
            device_id=GATEWAY_DEVICE,
            key=field.key if measurement is schema.GATEWAY else measurement.name,
            name=kind.name,
            kind=kind,
            series=state_key(measurement.name, {}),
            field=field.key,
            unit=kind.unit or (field.units[0] if field.units else None),
            device=block,
            own_availability=False,
        )


def entities(
    config: GatewayConfig,
    *,
    profiles: ProfileLookup = profile_for,
    discovery_prefix: str | None = None,
) -> list[Entity]:
    """Every entity of the gateway and its devices; DiscoveryError on a clash."""
    builder = _Builder(config, discovery_prefix=discovery_prefix)
    found = list(_gateway_entities(builder))
    for device in config.devices:
        profile = profiles(device)
        block = builder.device(device, profile)
        for point in profile.points:
            entity = _point_entity(builder, device, profile, point, block)
            if entity is not None:
                found.append(entity)
    _check_unique(found)
    return found


def _check_unique(found: list[Entity]) -> None:
    topics: dict[str, str] = {}
    ids: set[str] = set()
    for entity in found:
        if entity.unique_id in ids:
            raise DiscoveryError(f"unique id {entity.unique_id} appears twice")
        ids.add(entity.unique_id)
        if entity.topic in topics:
            raise DiscoveryError(
                f"{entity.unique_id} and {topics[entity.topic]} share {entity.topic}"
            )
        topics[entity.topic] = entity.unique_id


def discovery(config: GatewayConfig, **kw: Any) -> dict[str, bytes]:
    """``{topic: payload}``: the retained discovery messages of a gateway."""
    return {e.topic: e.encode() for e in entities(config, **kw)}


def alert_entity(
    config: GatewayConfig, kind: str, *, discovery_prefix: str | None = None
) -> Entity:
    """The binary sensor of one of the gateway's alert kinds (they appear as raised)."""
    builder = _Builder(config, discovery_prefix=discovery_prefix)
    alert = kind_of(schema.ALERT.name, schema.ALERT_ACTIVE.key)
    assert alert is not None
    series = state_key(schema.ALERT.name, {schema.Tag.KIND.value: kind})
    entity = builder.entity(
        device_id=GATEWAY_DEVICE,
        key=f"{_ALERT_OBJECT}{kind}",
        name=f"Alert {kind.replace('_', ' ')}",
        kind=alert,
        series=series,
        field=schema.ALERT_ACTIVE.key,
        unit=None,
        device=builder.gateway_device(),
        own_availability=False,
    )
    values = f"value_json.get({json.dumps(series)}, {{}})"
    attributes = ", ".join(
        f"{json.dumps(f.key)}: {values}.get({json.dumps(f.key)})"
        for f in (schema.ALERT_MESSAGE, schema.ALERT_SEVERITY)
    )
    payload = dict(entity.payload)
    payload["json_attributes_topic"] = payload["state_topic"]
    payload["json_attributes_template"] = f"{{{{ {{{attributes}}} | tojson }}}}"
    return Entity(entity.topic, payload)


def is_alert_topic(topic: str, branch: str) -> bool:
    """A discovery topic of one of the gateway's alert entities (kept across restarts)."""
    parts = topic.split("/")
    return (
        len(parts) >= 4
        and parts[-3] == node_id(branch)
        and parts[-2].startswith(f"{GATEWAY_DEVICE}_{_ALERT_OBJECT}")
    )
