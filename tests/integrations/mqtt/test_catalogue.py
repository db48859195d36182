"""Rules over every MQTT profile, and the samples of both integrations validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge import schema
from edge.cli import load_checked
from integrations.mqtt.profile import CATALOGUE

ROOT = Path(__file__).resolve().parents[3]
PROFILES = CATALOGUE.all()


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
        if point.writable:
            assert profile.set_topic, f"{point.id} is writable but the profile has no set_topic"


@pytest.mark.parametrize(
    "sample", ["integrations/mqtt/sample.yaml", "integrations/modbus/sample.yaml"]
)
def test_samples_validate(sample: str) -> None:
    config = load_checked(ROOT / sample)
    assert config.devices
