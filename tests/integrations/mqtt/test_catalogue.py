"""Rules over every MQTT profile (adding a product is adding a YAML file, with no new test),
and the samples of both integrations validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.config import MqttTransport, load_gateway_config
from openbranch.edge.core.registry import load_checked
from openbranch.integrations.mqtt import MqttDriver
from openbranch.integrations.mqtt.profile import CATALOGUE

ROOT = Path(__file__).resolve().parents[3]
PROFILES = CATALOGUE.all()


def test_the_catalogue_has_the_products_the_branches_need() -> None:
    fields = {(p.measurement, p.field) for profile in PROFILES.values() for p in profile.points}
    assert ("occupancy", "entered") in fields and ("occupancy", "exited") in fields
    assert ("door", "open") in fields and ("door", "locked") in fields
    assert ("alert", "active") in fields  # the help-call button


@pytest.mark.parametrize("profile_id", sorted(PROFILES))
def test_points_speak_the_schema(profile_id: str) -> None:
    profile = PROFILES[profile_id]
    assert len({p.id for p in profile.points}) == len(profile.points)
    for point in profile.points:
        assert point.measurement is not None, point.id
        field = schema.MEASUREMENTS[point.measurement].fields[point.field or ""]
        assert (point.unit in field.units) if field.units else point.unit is None
        for value in (point.map or {}).values():
            field.check(value)  # every mapped value has the field's type and is a choice
        if field.choices or field.type is schema.FieldType.STRING:
            assert point.map, f"{point.id}: a device's free text never becomes {field.key}"
        assert not set(point.ignore) & set(point.map or {}), f"{point.id}: ignored and mapped"
        if point.writable:
            assert profile.set_topic, f"{point.id} is writable but the profile has no set_topic"
            assert point.map or point.json_type != "string", f"{point.id}: commands need a map"


@pytest.mark.parametrize("profile_id", sorted(PROFILES))
def test_every_topic_has_a_datasheet_example(profile_id: str) -> None:
    """Examples are quoted from the datasheet; test_payload decodes each one."""
    profile = PROFILES[profile_id]
    assert len(profile.datasheet) >= 20
    assert {e.topic for e in profile.examples} == set(profile.topics)
    covered = {point for e in profile.examples for point in e.values}
    assert covered == {p.id for p in profile.points if p.measurement is not None}


@pytest.mark.parametrize(
    "sample", ["integrations/mqtt/sample.yaml", "integrations/modbus/sample.yaml"]
)
def test_samples_validate(sample: str) -> None:
    config = load_checked(ROOT / sample)
    assert config.devices


def test_the_mqtt_sample_uses_every_profile() -> None:
    config = load_gateway_config(
        ROOT / "integrations/mqtt/sample.yaml", check_device=MqttDriver().check
    )
    assert config.mqtt is not None
    assert {d.profile for d in config.devices} == set(PROFILES)
    assert all(isinstance(d.transport, MqttTransport) for d in config.devices)
