"""Discovery configs from every shipped profile and from a whole fleet render: every entity has
a unique id, none is used twice, energy totals feed Home Assistant's energy dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.clock import SystemClock
from openbranch.edge.core.config import (
    DeviceConfig,
    GatewayConfig,
    gateway_json_schema,
    load_gateway_config,
)
from openbranch.edge.core.messaging import state_key
from openbranch.edge.core.registry import ExtensionContext, default_registry
from openbranch.edge.core.schema import GATEWAY_DEVICE
from openbranch.edge.core.yamlsource import ConfigError
from openbranch.integrations.homeassistant import DiscoveryError, alert_entity, entities, extension
from openbranch.integrations.homeassistant.entity import KINDS, Platform
from openbranch.integrations.modbus.profile import CATALOGUE as MODBUS
from openbranch.integrations.mqtt.profile import CATALOGUE as MQTT
from openbranch.integrations.profile import Point, Profile
from openbranch.provisioning.inventory import load_inventory
from openbranch.provisioning.render import render_gateway
from tests.support.fresh import run_python

ROOT = Path(__file__).resolve().parents[3]
TOPIC = re.compile(
    r"^homeassistant/(sensor|binary_sensor)/openbranch_[a-z0-9_-]+/[A-Za-z0-9_-]+/config$"
)


def catalogue_config() -> GatewayConfig:
    """One device per shipped profile, Modbus and MQTT."""
    devices: list[dict[str, Any]] = [
        {
            "id": f"m{i}",
            "profile": profile_id,
            "transport": {"type": "modbus_tcp", "host": "127.0.0.1", "port": 1502, "unit_id": i},
        }
        for i, profile_id in enumerate(sorted(MODBUS.all()), start=1)
    ] + [
        {"id": f"q{i}", "profile": profile_id, "transport": {"type": "mqtt", "topic": f"z/{i}"}}
        for i, profile_id in enumerate(sorted(MQTT.all()), start=1)
    ]
    return GatewayConfig.model_validate(
        {
            "branch": {"id": "catalogue", "name": "Catalogue Bibliotek"},
            "mqtt": {"host": "127.0.0.1"},
            "devices": devices,
        }
    )


def profile_of(device: DeviceConfig) -> Profile[Any]:
    catalogue = MQTT if device.transport.type == "mqtt" else MODBUS
    return catalogue.get(device.profile)


def test_every_shipped_profile_gives_entities_with_unique_ids_and_both_availabilities() -> None:
    config = catalogue_config()
    found = entities(config)
    ids = [e.unique_id for e in found]
    assert all(ids) and len(ids) == len(set(ids))
    assert all(TOPIC.match(e.topic) for e in found), [
        e.topic for e in found if not TOPIC.match(e.topic)
    ]
    for device in config.devices:
        profile = profile_of(device)
        mine = [e for e in found if e.unique_id.startswith(f"openbranch:catalogue:{device.id}:")]
        worth = [
            p
            for p in profile.points
            if p.measurement and p.field and (p.measurement, p.field) in KINDS
        ]
        assert len(mine) == len(worth), (
            f"{profile.id}: {len(mine)} entities for {len(worth)} points"
        )
        assert mine, f"{profile.id} gives no entity at all"
        for entity in mine:
            p = entity.payload
            assert p["device"]["manufacturer"] == profile.manufacturer
            assert p["device"]["model"] == profile.model
            assert p["device"]["suggested_area"] == config.branch.name
            assert p["device"]["via_device"] == "openbranch:catalogue"
            assert [a["topic"] for a in p["availability"]] == [
                "openbranch/catalogue/status",
                f"openbranch/catalogue/{device.id}/availability",
            ]
            assert p["availability_mode"] == "all"
            assert p["state_topic"] == f"openbranch/catalogue/{device.id}/state"


def test_energy_registers_show_the_corrected_total_for_the_energy_dashboard() -> None:
    found = {e.unique_id: e for e in entities(catalogue_config())}
    registers = 0
    for device in catalogue_config().devices:
        profile = profile_of(device)
        for point in profile.points:
            if point.field != schema.ENERGY_REGISTER.key:
                continue
            registers += 1
            entity = found[f"openbranch:catalogue:{device.id}:{point.id}_total"]
            p = entity.payload
            # a water meter (m³, moxa-iologik-e1210-water) is a volume, the others energy
            expected = ("water", "m³") if point.unit == "m³" else ("energy", "kWh")
            assert (p["device_class"], p["unit_of_measurement"]) == expected
            assert p["state_class"] == "total_increasing"
            series = state_key(schema.ENERGY.name, profile.tags_for(point, device.zone))
            assert json.dumps(series) in p["value_template"]
            assert json.dumps(schema.ENERGY_TOTAL.key) in p["value_template"]
            assert json.dumps(schema.ENERGY_REGISTER.key) not in p["value_template"]
    assert registers >= 3  # the catalogue's meters


def test_lights_and_phases_read_their_own_series() -> None:
    found = {e.unique_id: e for e in entities(catalogue_config())}
    lunatone = next(d for d in catalogue_config().devices if d.profile == "lunatone-dali2-modbus")
    level = found[f"openbranch:catalogue:{lunatone.id}:level_g1"].payload
    series = state_key(schema.LIGHT.name, {schema.Tag.ZONE.value: "group-1"})
    assert json.dumps(series) in level["value_template"]
    assert level["name"] == "Light level group-1"
    on = found[f"openbranch:catalogue:{lunatone.id}:on_g1"].payload
    assert on["device_class"] == "light" and on["payload_on"] == "ON"
    sdm = next(d for d in catalogue_config().devices if d.profile == "eastron-sdm630")
    l2 = found[f"openbranch:catalogue:{sdm.id}:voltage_l2"].payload
    series = state_key(schema.ELECTRICAL.name, {schema.Tag.PHASE.value: "l2"})
    assert series.endswith("/l2") and json.dumps(series) in l2["value_template"]
    assert l2["name"] == "Voltage L2"


def test_a_lock_is_on_when_unlocked() -> None:
    config = catalogue_config()
    lock = next(d for d in config.devices if d.profile == "danalock-v3-zigbee")
    payload = next(
        e for e in entities(config) if e.unique_id.endswith(f":{lock.id}:locked")
    ).payload
    assert payload["device_class"] == "lock"
    assert "('OFF' if v else 'ON')" in payload["value_template"]  # locked (true) is off


def test_the_gateway_device_has_mode_people_health_and_connectivity() -> None:
    found = {e.unique_id: e.payload for e in entities(catalogue_config())}
    gateway = f"openbranch:catalogue:{GATEWAY_DEVICE}"
    mode = found[f"{gateway}:{schema.BRANCH_MODE.name}"]
    assert mode["device_class"] == "enum" and mode["options"] == list(
        schema.BRANCH_MODE_MODE.choices
    )
    assert found[f"{gateway}:{schema.OCCUPANCY.name}"]["state_class"] == "measurement"
    depth = schema.GATEWAY_OUTBOX_DEPTH.key
    assert json.dumps(depth) in found[f"{gateway}:{depth}"]["value_template"]
    status = found[f"{gateway}:status"]
    assert status["state_topic"] == "openbranch/catalogue/status" and "availability" not in status
    for uid, payload in found.items():
        if uid.startswith(f"{gateway}:") and uid != f"{gateway}:status":
            assert [a["topic"] for a in payload["availability"]] == ["openbranch/catalogue/status"]


def test_alert_entities_carry_message_and_severity() -> None:
    entity = alert_entity(catalogue_config(), "device_down:m1")
    assert entity.topic.endswith(f"/{GATEWAY_DEVICE}_{schema.ALERT.name}_device_down_m1/config")
    assert entity.payload["device_class"] == "problem"
    series = state_key(schema.ALERT.name, {schema.Tag.KIND.value: "device_down:m1"})
    assert json.dumps(series) in entity.payload["value_template"]
    assert entity.payload["json_attributes_topic"] == f"openbranch/catalogue/{GATEWAY_DEVICE}/state"
    for field in (schema.ALERT_MESSAGE, schema.ALERT_SEVERITY):
        assert json.dumps(field.key) in entity.payload["json_attributes_template"]


NO_FILES_LEFT = """
import errno, resource
from openbranch.integrations.homeassistant import alert_entity
from tests.integrations.homeassistant.test_discovery import catalogue_config
config = catalogue_config()
alert_entity(config, "device_down:m1")  # the gateway's entities, built at its start
resource.setrlimit(resource.RLIMIT_NOFILE, (0, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    open("/dev/null")
except OSError as exc:
    print("out of file descriptors:", exc.errno == errno.EMFILE)
print(alert_entity(config, "sink_down:influxdb_v1:http://127.0.0.1:8086/db").topic)
"""


def test_an_alert_entity_is_built_with_no_file_descriptor_left() -> None:
    """An alert can be raised because the process is out of file descriptors (the soak's
    fault): its entity must not need one (the package version was read from disk each time)."""
    lines = run_python(NO_FILES_LEFT)
    assert lines[0] == "out of file descriptors: True"
    assert lines[1].endswith("/gateway_alert_sink_down_influxdb_v1_http___127_0_0_1_8086_db/config")


def test_no_unique_id_twice_across_the_fleet_render() -> None:
    check = default_registry().check_device
    seen: dict[str, str] = {}
    topics: set[str] = set()
    branches = 0
    for name in ("aarhus.yaml", "copenhagen.yaml"):
        inventory = load_inventory(ROOT / "examples" / "inventories" / name, check_device=check)
        for branch in inventory.branches:
            config = GatewayConfig.model_validate(render_gateway(inventory, branch))
            branches += 1
            found = entities(config)
            assert len(found) > len(config.devices), branch.id
            for entity in found:
                assert entity.unique_id, entity.topic
                assert entity.unique_id not in seen, (
                    f"{entity.unique_id} in {branch.id} and {seen[entity.unique_id]}"
                )
                seen[entity.unique_id] = branch.id
                assert entity.topic not in topics
                topics.add(entity.topic)
    assert branches >= 2


def _profile(*point_ids: str) -> Profile[Point]:
    return Profile[Point](
        id="test-co2",
        manufacturer="Test",
        model="CO2",
        datasheet="made up for this test",
        points=[
            Point(id=p, measurement=schema.INDOOR.name, field=schema.INDOOR_CO2.key, unit="ppm")
            for p in point_ids
        ],
    )


def test_two_entities_on_one_topic_are_refused() -> None:
    profile = _profile("y_z", "z")
    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "clash", "name": "Clash"},
            "devices": [
                {"id": "x", "profile": "test-co2", "transport": {"type": "mqtt", "topic": "a"}},
                {"id": "x_y", "profile": "test-co2", "transport": {"type": "mqtt", "topic": "b"}},
            ],
        }
    )
    with pytest.raises(DiscoveryError, match="share homeassistant/sensor/openbranch_clash/x_y_z"):
        entities(config, profiles=lambda _d: profile)


def test_config_switch_prefix_and_schema(tmp_path: Path) -> None:
    base = {"branch": {"id": "b", "name": "B"}, "mqtt": {"host": "127.0.0.1"}}
    off = GatewayConfig.model_validate({**base, "homeassistant": {"enabled": False}})
    on = GatewayConfig.model_validate({**base, "homeassistant": {"discovery_prefix": "ha/test"}})
    assert on.homeassistant.enabled and GatewayConfig.model_validate(base).homeassistant.enabled
    assert all(e.topic.startswith("ha/test/") for e in entities(on))
    assert extension(ExtensionContext(config=off, mqtt=None, clock=SystemClock())) is None
    assert "homeassistant" in json.loads(gateway_json_schema())["properties"]
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "branch: {id: b, name: B}\nhomeassistant:\n  discovery_prefix: 'bad/#'\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"gateway\.yaml:3.*discovery_prefix"):
        load_gateway_config(path)


def test_home_assistant_gets_read_only_sensors_only() -> None:
    platforms = {e.topic.split("/")[1] for e in entities(catalogue_config())}
    assert platforms == {Platform.SENSOR.value, Platform.BINARY_SENSOR.value}  # read-only


def test_the_sample_config_is_valid_and_renders() -> None:
    sample = ROOT / "integrations" / "homeassistant" / "sample.yaml"
    config = load_gateway_config(sample, check_device=default_registry().check_device)
    found = {e.unique_id: e.payload for e in entities(config)}
    energy = found["openbranch:sample-branch:main-meter:import_kwh_total"]
    assert energy["device"]["name"] == "Main meter"
    assert energy["device"]["suggested_area"] == "Sample Bibliotek"
    co2 = found["openbranch:sample-branch:reading-room-climate:co2"]
    assert '"indoor/reading-room"' in co2["value_template"]  # the device's zone is its series
