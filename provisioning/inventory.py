"""The fleet inventory: one YAML file describes a municipality's branches, their devices and
hours; everything else (gateway configs, broker accounts and ACLs, ...) is rendered from it.

Errors name the file, the line and the field, like every config of OpenBranch; cross-checks
catch duplicate ids, unknown profiles and two devices on one unit id of one bus.

Every text in an inventory ends up in a rendered file (YAML, Mosquitto's config and ACL, a
bridge, a comment), so the model refuses control characters in every string of the document
(values and keys), wildcards where one literal topic is meant, and hosts that are not a host
name or an IP address (``provisioning.text``); the writers escape or refuse on their side too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from openbranch.edge.core.config import (
    DeviceConfig,
    MqttConfig,
    MqttTransport,
    SinkConfig,
    device_problems,
)
from openbranch.edge.core.imported import WebsiteHours
from openbranch.edge.core.schedule import Actuator, ClosingPolicy, OpeningHours
from openbranch.edge.core.yamlsource import (
    ConfigError,
    Document,
    Location,
    Problem,
    load_yaml,
    validate,
)
from openbranch.provisioning.text import control_problem, host_problem, topic_problem

__all__ = [
    "Branch",
    "Defaults",
    "Inventory",
    "Municipality",
    "inventory_json_schema",
    "load_inventory",
]

Identifier = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")

#: MQTT keep-alive bounds (s). Whole seconds (paho and the protocol take an integer; 0.2 became
#: 0, no keep-alive and so no last will). At least 5 s: the broker drops a client after 1.5
#: keep-alives without a packet, and a branch's uplink or a busy gateway can be that slow.
#: At most 65,535 s: the CONNECT packet's 16-bit field.
KEEPALIVE_MIN, KEEPALIVE_MAX = 5, 65535


def _zone(name: str) -> str:
    """An IANA time zone the gateway will accept (edge.core.config checks the same)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Copenhagen)") from None
    return name


TimeZone = Annotated[str, AfterValidator(_zone)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Municipality(_Model):
    id: str = Identifier
    name: str
    price_area: Literal["DK1", "DK2"]
    heat_supplier: str | None = None
    timezone: TimeZone = "Europe/Copenhagen"


class Defaults(_Model):
    """Fleet defaults a branch inherits unless it says otherwise."""

    hours: OpeningHours | None = None
    closing: ClosingPolicy = Field(default_factory=ClosingPolicy)
    mqtt: MqttConfig | None = None
    mqtt_standby: str | None = Field(
        default=None,
        min_length=1,
        description="the shard's second central broker (a host name, same ports as mqtt.host): "
        "bridges from branches' local brokers fail over to it and return to mqtt.host "
        "(docs/SCALE.md)",
    )
    sinks: list[SinkConfig] = Field(default_factory=list)
    entry_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="days the central InfluxDB keeps entry records (card pseudonyms): "
        "`openbranch provision purge-entries`, run daily by the rendered openbranch-purge.timer",
    )


class Branch(_Model):
    id: str = Identifier
    name: str
    address: str = ""
    floor_area_m2: float = Field(gt=0, allow_inf_nan=False)
    timezone: TimeZone | None = Field(default=None, description="default: the municipality's")
    price_area: Literal["DK1", "DK2"] | None = None
    heat_supplier: str | None = None
    zones: list[str] = Field(default_factory=list)
    occupancy_cap: int | None = Field(default=None, ge=1)
    hours: OpeningHours | None = None
    website_hours: WebsiteHours | None = Field(
        default=None,
        description="where the branch's hours are published (DPL CMS) and the table of its "
        "categories -> modes; rendered into the gateway config (openbranch hours)",
    )
    devices: list[DeviceConfig] = Field(default_factory=list)
    actuators: list[Actuator] = Field(default_factory=list)
    fire_alarm_device: str | None = None
    local_broker: bool = Field(
        default=False, description="the branch runs its own Mosquitto, bridged to the central one"
    )


def _error(loc: Location, message: str) -> InitErrorDetails:
    return {
        "type": PydanticCustomError("inventory", "{message}", {"message": message}),
        "loc": loc,
        "input": None,
    }


def _raise(errors: list[InitErrorDetails]) -> None:
    if errors:
        raise ValidationError.from_exception_data("Inventory", errors)


def _control_characters(data: Any, loc: Location = ()) -> Iterator[InitErrorDetails]:
    """Every string of the raw document with a control character: values at their own
    location, keys at their mapping's (a key's text is never part of a location)."""
    if isinstance(data, str):
        problem = control_problem(data)
        if problem is not None:
            yield _error(loc, problem)
    elif isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and (problem := control_problem(key)) is not None:
                yield _error(loc, f"the key {key!r} has a {problem}")
                continue
            yield from _control_characters(value, (*loc, key))
    elif isinstance(data, list | tuple):
        for i, item in enumerate(data):
            yield from _control_characters(item, (*loc, i))


def _mqtt_problems(mqtt: MqttConfig | None) -> list[InitErrorDetails]:
    if mqtt is None:
        return []
    at = ("defaults", "mqtt")
    errors = []
    if (problem := host_problem(mqtt.host)) is not None:
        errors.append(_error((*at, "host"), problem))
    keepalive = mqtt.keepalive
    if not keepalive.is_integer() or not KEEPALIVE_MIN <= keepalive <= KEEPALIVE_MAX:
        message = (
            f"{keepalive:g} s: the keep-alive is whole seconds from {KEEPALIVE_MIN} to"
            f" {KEEPALIVE_MAX} (below {KEEPALIVE_MIN} s a slow uplink drops the gateway;"
            " a fraction would be cut to whole seconds, 0 meaning no keep-alive and no last will)"
        )
        errors.append(_error((*at, "keepalive"), message))
    prefix = mqtt.topic_prefix
    problem = topic_problem(prefix, dollar=False)
    if problem is None and "" in prefix.split("/"):
        problem = "no empty topic level (a '/' at either end or '//')"
    if problem is not None:
        errors.append(_error((*at, "topic_prefix"), problem))
    return errors


class Inventory(_Model):
    municipality: Municipality
    defaults: Defaults = Field(default_factory=Defaults)
    branches: list[Branch] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_line_text(cls, data: Any) -> Any:
        _raise(list(_control_characters(data)))
        return data

    @model_validator(mode="after")
    def _renderable(self) -> Inventory:
        """What the gateway's own model lets through but a rendered config must not carry."""
        errors = _mqtt_problems(self.defaults.mqtt)
        for b, branch in enumerate(self.branches):
            for d, device in enumerate(branch.devices):
                if isinstance(device.transport, MqttTransport):
                    problem = topic_problem(device.transport.topic, dollar=False)
                    if problem is not None:
                        loc = ("branches", b, "devices", d, "transport", "topic")
                        errors.append(_error(loc, problem))
        _raise(errors)
        return self


DeviceCheck = Callable[[DeviceConfig], None]


def _check_branch(
    b: int, branch: Branch, doc: Document, check_device: DeviceCheck | None
) -> list[Problem]:
    problems = device_problems(branch.devices, doc, ("branches", b, "devices"))
    devices = {d.id for d in branch.devices}
    for d, device in enumerate(branch.devices):
        where = ("branches", b, "devices", d)
        if device.zone is not None and branch.zones and device.zone not in branch.zones:
            problems.append(
                doc.problem((*where, "zone"), f"{device.zone!r} is not one of the branch's zones")
            )
        if check_device is not None:
            try:
                check_device(device)
            except ValueError as exc:
                problems.append(doc.problem((*where, "profile"), str(exc)))
    for a, actuator in enumerate(branch.actuators):
        if actuator.device not in devices:
            where_a = ("branches", b, "actuators", a, "device")
            problems.append(doc.problem(where_a, f"no device {actuator.device!r}"))
    fire = branch.fire_alarm_device
    if fire is not None and fire not in devices:
        problems.append(doc.problem(("branches", b, "fire_alarm_device"), f"no device {fire!r}"))
    return problems


def _cross_check(inv: Inventory, doc: Document, check_device: DeviceCheck | None) -> None:
    problems = []
    seen: dict[str, int] = {}
    for b, branch in enumerate(inv.branches):
        if branch.id in seen:
            problems.append(
                doc.problem(
                    ("branches", b, "id"), f"{branch.id!r} is already branches[{seen[branch.id]}]"
                )
            )
        seen.setdefault(branch.id, b)
        problems += _check_branch(b, branch, doc, check_device)
    if problems:
        raise ConfigError(problems)


def load_inventory(path: Path | str, *, check_device: DeviceCheck | None = None) -> Inventory:
    doc = load_yaml(path)
    inventory = validate(Inventory, doc)
    _cross_check(inventory, doc, check_device)
    return inventory


def inventory_json_schema() -> str:
    schema = Inventory.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "OpenBranch fleet inventory"
    return json.dumps(schema, indent=2)
