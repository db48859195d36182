"""Hostile or mistaken inventory text: refused at the inventory with a located error, and
escaped or refused by every writer that would put it into a rendered file (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from openbranch.edge.core.config import MqttTransport
from openbranch.edge.core.registry import default_registry
from openbranch.edge.core.yamlsource import ConfigError
from openbranch.provisioning.inventory import Branch, Inventory, load_inventory
from openbranch.provisioning.render import RenderError, render, render_gateway
from openbranch.provisioning.secrets import Secrets
from tests.provisioning.mosquitto_text import acl_entries, directives

ROOT = Path(__file__).resolve().parents[2]
AARHUS = ROOT / "examples" / "inventories" / "aarhus.yaml"
HELP_TOPIC = "topic: aarhus/hasle/zigbee2mqtt/help-button"


def refused(tmp_path: Path, text: str) -> str:
    path = tmp_path / "aarhus.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_inventory(path, check_device=default_registry().check_device)
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    return message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # the ACL injection of issue 13: a newline in a device topic
        (
            HELP_TOPIC,
            'topic: "aarhus/hasle/help\\ntopic readwrite #"',
            ":62: branches[1].devices[5].transport.topic: control character U+000A",
        ),
        (HELP_TOPIC, 'topic: "#"', ("branches[1].devices[5].transport.topic: ", "'#'")),
        (
            HELP_TOPIC,
            "topic: aarhus/+/help",
            ("branches[1].devices[5].transport.topic: ", "'+'"),
        ),
        (
            HELP_TOPIC,
            'topic: " aarhus/hasle/help"',
            "branches[1].devices[5].transport.topic: a topic does not start or end with blanks",
        ),
        (
            HELP_TOPIC,
            "topic: $SYS/broker/uptime",
            "branches[1].devices[5].transport.topic: a topic here does not start with '$'",
        ),
        (HELP_TOPIC, 'topic: ""', ("branches[1].devices[5].transport.topic: ", "empty")),
        # a newline in a branch name added keys to the gateway YAML and lines to the bridge
        (
            "name: Viby Bibliotek",
            'name: "Viby\\naddress evil.example:1883\\ntopic # both 1"',
            ":70: branches[2].name: control character U+000A",
        ),
        (
            "name: Aarhus Kommune",
            'name: "Aarhus\\rKommune"',
            "municipality.name: control character U+000D",
        ),
        (
            "address: Rymarken 3, 8210 Aarhus V",
            'address: "Rymarken 3\\u2028x"',
            "branches[1].address: control character U+2028",
        ),
        ("heat_supplier: Kredsløb", 'heat_supplier: "Kreds\\x00løb"', "U+0000"),
        (
            "zones: [ground, level-1, level-2]",
            'zones: [ground, "level-1\\t", level-2]',
            "branches[0].zones[1]: control character U+0009",
        ),
        (
            "point: target_g0}",
            'point: "target_g0\\u202e"}',
            "branches[1].actuators[3].point: control character U+202E",
        ),
        (  # a key: reported at its mapping, with the key escaped
            "mqtt: {host: mqtt.aarhus.example, port: 8883, tls: true}",
            'mqtt: {host: mqtt.aarhus.example, port: 8883, tls: true, "x\\ny": 1}',
            "defaults.mqtt: the key 'x\\ny' has a control character U+000A",
        ),
        (
            "mqtt: {host: mqtt.aarhus.example,",
            'mqtt: {host: "mqtt.aarhus.example 10.0.0.1",',
            "defaults.mqtt.host: 'mqtt.aarhus.example 10.0.0.1' is not a host name or an IP address",
        ),
    ],
)
def test_hostile_text_is_refused_with_a_located_error(
    tmp_path: Path, old: str, new: str, expected: str | tuple[str, ...]
) -> None:
    text = AARHUS.read_text(encoding="utf-8")
    assert old in text
    message = refused(tmp_path, text.replace(old, new, 1))
    for part in (expected,) if isinstance(expected, str) else expected:
        assert part in message, message
    assert "\n" not in message.strip() or all(
        line.startswith(str(tmp_path)) for line in message.splitlines()
    ), message  # one located line per problem, never a raw newline from the input


def test_printable_text_of_every_script_is_accepted(tmp_path: Path) -> None:
    text = (
        AARHUS.read_text(encoding="utf-8")
        .replace("name: Viby Bibliotek", "name: 'Viby Bibliotek: #1 {x} & *y \"z\" ø æ å 図書館'")
        .replace(HELP_TOPIC, "topic: 'aarhus/hasle/hjælp knap/ø'")
    )
    path = tmp_path / "aarhus.yaml"
    path.write_text(text, encoding="utf-8")
    inventory = load_inventory(path, check_device=default_registry().check_device)
    assert inventory.branches[2].name.startswith("Viby Bibliotek: #1")


def _inventory() -> Inventory:
    return load_inventory(AARHUS, check_device=default_registry().check_device)


def _with_branch(inventory: Inventory, index: int, **update: object) -> Inventory:
    """``inventory`` with fields of one branch replaced *without validation*: what a writer
    must cope with if a value ever slips past the model."""
    branches = list(inventory.branches)
    branches[index] = branches[index].model_copy(update=update)
    return inventory.model_copy(update={"branches": branches})


def _with_device_topic(inventory: Inventory, topic: str) -> Inventory:
    hasle: Branch = inventory.branches[1]
    devices = [
        d.model_copy(
            update={
                "transport": MqttTransport(type="mqtt", topic="x").model_copy(
                    update={"topic": topic}
                )
            }
        )
        if isinstance(d.transport, MqttTransport)
        else d
        for d in hasle.devices
    ]
    return _with_branch(inventory, 1, devices=devices)


@pytest.mark.parametrize(
    "topic", ["a/b\ntopic readwrite #", "#", "a/+/b", " a/b", "a/b\t", "a\x00b", ""]
)
def test_the_acl_writer_refuses_a_topic_that_is_not_one_literal_topic(
    tmp_path: Path, topic: str
) -> None:
    bad = _with_device_topic(_inventory(), topic)
    with pytest.raises(RenderError, match="help-button"):
        render(bad, Secrets(tmp_path / "secrets"))


@pytest.mark.parametrize(
    "name",
    [
        "Viby\nmqtt: {host: evil.example}\n# x\r\u2028 'q' \"dq\" &a *a !!python/object",
        "Viby\x85Bibliotek",  # PyYAML writes U+0085 raw when allowed Unicode, reads a blank
        "Viby Bibliotek \u2029",
    ],
)
def test_the_yaml_writer_escapes_what_it_is_given(tmp_path: Path, name: str) -> None:
    bad = _with_branch(_inventory(), 2, name=name)
    files = render(bad, Secrets(tmp_path / "secrets"))
    text = files["gateways/viby.yaml"]
    data = yaml.safe_load(text)
    assert data == render_gateway(bad, bad.branches[2])  # parses back to what was rendered
    assert data["branch"]["name"] == name
    assert data["mqtt"]["host"] == "mqtt.aarhus.example"
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert len(comments) == 2, comments  # the header stays two comment lines
    assert text.splitlines()[2].startswith("branch:")


def test_the_bridge_writer_keeps_a_name_in_its_comment(tmp_path: Path) -> None:
    name = "Viby\naddress evil.example:1883\ntopic # both 1\r\x85\u2029"
    bad = _with_branch(_inventory(), 2, name=name)
    files = render(bad, Secrets(tmp_path / "secrets"))
    bridge = directives(files["mosquitto/bridges/viby.conf"])
    assert [value for key, value in bridge if key == "address"] == ["mqtt.aarhus.example:8884"]
    assert [value for key, value in bridge if key == "topic"] == [
        "openbranch/viby/status out 1",
        "openbranch/viby/+/state out 1",
        "openbranch/viby/+/availability out 1",
        "openbranch/viby/control in 1",
        "homeassistant/+/openbranch_viby/# out 1",
        "homeassistant/status in 1",
    ]


def test_the_bridge_writer_refuses_a_host_that_is_not_one_token(tmp_path: Path) -> None:
    inventory = _inventory()
    assert inventory.defaults.mqtt is not None
    mqtt = inventory.defaults.mqtt.model_copy(update={"host": "a.example b.example"})
    bad = inventory.model_copy(
        update={"defaults": inventory.defaults.model_copy(update={"mqtt": mqtt})}
    )
    with pytest.raises(RenderError, match="host"):
        render(bad, Secrets(tmp_path / "secrets"))


def test_the_rendered_acl_grants_exactly_the_device_topics(tmp_path: Path) -> None:
    files = render(_inventory(), Secrets(tmp_path / "secrets"))
    reads = {
        topic
        for user, access, topic in acl_entries(files["mosquitto/acl"])
        if user == "gw-hasle" and access == "read"
    }
    assert reads == {
        "openbranch/hasle/control",
        "homeassistant/status",
        "aarhus/hasle/zigbee2mqtt/help-button",
    }


# --- operator mistakes that rendered configs the gateway would refuse or misread ----------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "  heat_supplier: Kredsløb\n",
            "  heat_supplier: Kredsløb\n  timezone: Mars/Olympus\n",
            "municipality.timezone: 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            "    name: Hasle Bibliotek\n",
            "    name: Hasle Bibliotek\n    timezone: ../../etc/passwd\n",
            ":53: branches[1].timezone: '../../etc/passwd' is not an IANA time zone",
        ),
        (
            "tls: true}",
            "tls: true, keepalive: 0.2}",
            ("defaults.mqtt.keepalive: ", "whole seconds"),
        ),
        (
            "tls: true}",
            "tls: true, keepalive: 4}",
            ("defaults.mqtt.keepalive: 4 s", "from 5 to 65535"),
        ),
        (
            "tls: true}",
            "tls: true, keepalive: 10.5}",
            ("defaults.mqtt.keepalive: ", "whole seconds"),
        ),
        (
            "tls: true}",
            'tls: true, keepalive: "2500ms"}',
            ("defaults.mqtt.keepalive: ", "whole seconds"),
        ),
        ("tls: true}", "tls: true, keepalive: 70000}", ("defaults.mqtt.keepalive: ", "65535")),
        ("floor_area_m2: 600 ", "floor_area_m2: .inf ", "branches[1].floor_area_m2:"),
        ("floor_area_m2: 600 ", "floor_area_m2: .nan ", "branches[1].floor_area_m2:"),
        ("floor_area_m2: 600 ", "floor_area_m2: 0 ", "branches[1].floor_area_m2:"),
        (
            "tls: true}",
            "tls: true, topic_prefix: x/#}",
            ("defaults.mqtt.topic_prefix: ", "'#'"),
        ),
        (
            "tls: true}",
            "tls: true, topic_prefix: x/+/y}",
            ("defaults.mqtt.topic_prefix: ", "'+'"),
        ),
        (
            "tls: true}",
            "tls: true, topic_prefix: libraries/}",
            "defaults.mqtt.topic_prefix: no empty topic level",
        ),
        (
            "tls: true}",
            "tls: true, topic_prefix: $SYS}",
            "defaults.mqtt.topic_prefix: a topic here does not start with '$'",
        ),
    ],
)
def test_operator_mistakes_are_refused_with_a_located_error(
    tmp_path: Path, old: str, new: str, expected: str | tuple[str, ...]
) -> None:
    """Where the gateway's own model (edge.core.config) refuses too, its message may come
    first: the test pins the location and the point, not the wording."""
    text = AARHUS.read_text(encoding="utf-8")
    assert old in text
    message = refused(tmp_path, text.replace(old, new, 1))
    for part in (expected,) if isinstance(expected, str) else expected:
        assert part in message, message


@pytest.mark.parametrize("keepalive", ["5", "30", '"60s"', '"2m"', "65535"])
def test_whole_keepalives_of_five_seconds_and_more_are_accepted(
    tmp_path: Path, keepalive: str
) -> None:
    path = tmp_path / "aarhus.yaml"
    text = AARHUS.read_text(encoding="utf-8")
    path.write_text(text.replace("tls: true}", f"tls: true, keepalive: {keepalive}}}"), "utf-8")
    inventory = load_inventory(path)
    assert inventory.defaults.mqtt is not None
    assert inventory.defaults.mqtt.keepalive >= 5


def test_a_branchs_own_timezone_and_the_fleets_topic_prefix_are_rendered(tmp_path: Path) -> None:
    text = (
        AARHUS.read_text(encoding="utf-8")
        .replace(
            "    name: Hasle Bibliotek\n",
            "    name: Hasle Bibliotek\n    timezone: Atlantic/Faroe\n",
        )
        .replace("tls: true}", "tls: true, topic_prefix: kk/libraries}")
    )
    path = tmp_path / "aarhus.yaml"
    path.write_text(text, encoding="utf-8")
    inventory = load_inventory(path, check_device=default_registry().check_device)
    files = render(inventory, Secrets(tmp_path / "secrets"))
    timezones = {
        name: yaml.safe_load(files[f"gateways/{name}.yaml"])["branch"]["timezone"]
        for name in ("dokk1", "hasle", "viby")
    }
    assert timezones == {
        "dokk1": "Europe/Copenhagen",
        "hasle": "Atlantic/Faroe",
        "viby": "Europe/Copenhagen",
    }
    assert yaml.safe_load(files["gateways/hasle.yaml"])["mqtt"]["topic_prefix"] == "kk/libraries"
    acl = acl_entries(files["mosquitto/acl"])
    assert ("gw-hasle", "read", "kk/libraries/hasle/control") in acl
    assert ("operations", "write", "kk/libraries/+/control") in acl
    assert not [t for _u, _a, t in acl if t.startswith("openbranch/")]
    bridge = directives(files["mosquitto/bridges/viby.conf"])
    assert ("topic", "kk/libraries/viby/control in 1") in bridge
