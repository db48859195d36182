"""Random printable and control text in every free-text field of an inventory: either the
inventory refuses it with a located error, or every rendered file parses back, with its own
format's parser, to what the inventory said (issue 13).

The YAML property runs many examples (no server); the Mosquitto property starts a real broker
per example, so it runs a handful.
"""

from __future__ import annotations

import json
import tempfile
import threading
import unicodedata
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from openbranch.edge.core.config import MqttTransport
from openbranch.edge.core.registry import default_registry, load_checked
from openbranch.edge.core.yamlsource import ConfigError
from openbranch.provisioning.inventory import Inventory, load_inventory
from openbranch.provisioning.render import mosquitto_password_line, render, render_gateway
from openbranch.provisioning.secrets import Secrets
from tests.provisioning.mosquitto_text import acl_entries, directives
from tests.services import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
AARHUS = ROOT / "examples" / "inventories" / "aarhus.yaml"

HOSTILE = [
    "\n", "\r\n", "\r", "\x00", "\t", "\x0b", "\x7f", "\x85", "\u2028", "\u2029", "\u202e",
    "\ufeff", "\u200b", "#", "+", "/", "$", " ", ":", "'", '"', "{", "}", "[", "]", ",", "&a",
    "*a", "!!python/object/apply:os.system", "- ", "? ", "%", "\\", "yes", "null", "~", "1e3",
    "topic readwrite #", "\ntopic readwrite #", "\naddress evil.example:1883", "\nuser operations",
    "\ntopic # both 1", "\ufffe", "\ufdd0", "\U0001ffff", "ø", "図書館", "\U0001f4da",
]  # fmt: skip
TEXT = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=5)), max_size=4).map("".join)
REFUSED = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}

# where each generated text goes in the inventory (aarhus: hasle is branches[1], viby [2])
FIELDS: dict[str, tuple[str | int, ...]] = {
    "municipality": ("municipality", "name"),
    "hasle_name": ("branches", 1, "name"),
    "hasle_address": ("branches", 1, "address"),
    "viby_name": ("branches", 2, "name"),
    "device_name": ("branches", 1, "devices", 5, "name"),
    "topic": ("branches", 1, "devices", 5, "transport", "topic"),
    "closure_reason": ("defaults", "hours", "municipality_closures", 0, "reason"),
}


def _line_ok(text: str) -> bool:
    return all(
        unicodedata.category(c) not in REFUSED
        and not 0xFDD0 <= ord(c) <= 0xFDEF
        and ord(c) & 0xFFFE != 0xFFFE
        for c in text
    )


def _topic_ok(topic: str) -> bool:
    return (
        _line_ok(topic)
        and topic != ""
        and "+" not in topic
        and "#" not in topic
        and topic == topic.strip(" ")
        and not topic.startswith("$")
    )


def _acceptable(values: dict[str, str]) -> bool:
    """What the inventory must accept: one line of text everywhere, a literal topic."""
    return all(_line_ok(v) for v in values.values()) and _topic_ok(values["topic"])


def _write_inventory(folder: Path, values: dict[str, str]) -> Path:
    data = yaml.safe_load(AARHUS.read_text(encoding="utf-8"))
    data["defaults"]["hours"]["municipality_closures"] = [{"date": "2026-12-23", "reason": ""}]
    for name, loc in FIELDS.items():
        node = data
        for part in loc[:-1]:
            node = node[part]
        node[loc[-1]] = values[name]
    path = folder / "inventory.yaml"
    # allow_unicode=False: PyYAML writes U+0085 raw in a quoted scalar and reads it back as a
    # blank when allowed to write Unicode (provisioning/render.py checks its own dumps)
    path.write_text(yaml.safe_dump(data, allow_unicode=False, sort_keys=False), encoding="utf-8")
    return path


def _load(path: Path) -> Inventory:
    return load_inventory(path, check_device=default_registry().check_device)


def _outcome(path: Path) -> Inventory | ConfigError:
    try:
        return _load(path)
    except ConfigError as error:
        return error


def _assert_located(error: ConfigError, path: Path, values: dict[str, str]) -> None:
    """Every problem names the file and a line; every bad field is named at its own place
    (control characters are checked first, across the whole document, then the rest)."""
    assert error.problems
    for problem in error.problems:
        assert problem.file == str(path)
        assert problem.line is not None and problem.line > 0
        assert "\n" not in str(problem) and "\r" not in str(problem)
    not_one_line = {FIELDS[name] for name, value in values.items() if not _line_ok(value)}
    bad = not_one_line or {FIELDS["topic"]}
    assert {p.loc for p in error.problems} == bad


def _check_render(folder: Path, inventory: Inventory, files: dict[str, str]) -> None:
    out = folder / "out"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
    for branch in inventory.branches:
        name = f"gateways/{branch.id}.yaml"
        assert yaml.safe_load(files[name]) == render_gateway(inventory, branch)
        config = load_checked(out / name)  # the gateway's own loader and model
        assert config.branch.name == branch.name
        assert [d.transport for d in config.devices] == [d.transport for d in branch.devices]
        assert [d.name for d in config.devices] == [d.name for d in branch.devices]
    provider = yaml.safe_load(files["grafana/provisioning/dashboards/openbranch.yaml"])
    assert provider["providers"][0]["folder"] == inventory.municipality.name
    for name, text in files.items():
        if name.endswith(".json"):
            json.loads(text)
    hasle = inventory.branches[1]
    (topic,) = (d.transport.topic for d in hasle.devices if isinstance(d.transport, MqttTransport))
    acl = acl_entries(files["mosquitto/acl"])
    assert {(a, t) for u, a, t in acl if u == "gw-hasle" and a != "write"} == {
        ("read", "openbranch/hasle/control"),
        ("read", "homeassistant/status"),
        ("read", topic),
        ("readwrite", "homeassistant/+/openbranch_hasle/+/config"),
    }
    assert {u for u, _a, _t in acl} == {
        "gw-dokk1", "gw-hasle", "gw-viby", "operations", "dashboards", "homeassistant",
    }  # fmt: skip
    bridge = directives(files["mosquitto/bridges/viby.conf"])
    assert [k for k, _v in bridge] == [
        "connection", "address", "remote_clientid", "bridge_protocol_version", "bridge_cafile",
        "bridge_certfile", "bridge_keyfile", "cleansession", "notifications",
        "topic", "topic", "topic", "topic", "topic", "topic",
    ]  # fmt: skip
    assert ("address", "mqtt.aarhus.example:8884") in bridge
    for line in files["mosquitto/passwd"].splitlines():
        _user, hashed = line.split(":")
        assert hashed.startswith("$7$") and len(hashed.split("$")) == 5


ONE_LINE = st.lists(
    st.one_of(st.sampled_from([h for h in HOSTILE if _line_ok(h)]), st.text(max_size=5)),
    max_size=4,
).map(lambda parts: "".join(c for c in "".join(parts) if _line_ok(c)))
TOPIC = ONE_LINE.map(lambda t: t.replace("+", "p").replace("#", "h").strip(" ").lstrip("$"))
ACCEPTABLE = st.fixed_dictionaries(
    {name: (TOPIC.filter(bool) if name == "topic" else ONE_LINE) for name in FIELDS}
)


# half the examples with text the inventory takes (they render), half with any field hostile
@pytest.fixture(scope="module")
def shared_secrets(tmp_path_factory: pytest.TempPathFactory) -> Secrets:
    """One secrets folder for every example: the accounts are the same, so each password is
    hashed once (100,000 iterations), not once per example."""
    return Secrets(tmp_path_factory.mktemp("secrets"))


VALUES = st.one_of(
    ACCEPTABLE,
    st.fixed_dictionaries({name: st.one_of(ONE_LINE, TEXT) for name in FIELDS}),
)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(values=VALUES)
def test_random_text_is_refused_where_it_is_or_renders_files_that_parse_back(
    shared_secrets: Secrets, values: dict[str, str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = _write_inventory(folder, values)
        outcome = _outcome(path)
        if isinstance(outcome, ConfigError):
            assert not _acceptable(values), str(outcome)  # refused only what it must refuse
            _assert_located(outcome, path, values)
            return
        assert _acceptable(values)  # accepted only what it may accept
        files = dict(render(outcome, shared_secrets))
        _check_render(folder, outcome, files)


def _receives(broker: Mosquitto, user: str, password: str, topic: str) -> bool:
    """``user`` subscribed to exactly ``topic`` gets what the probe account publishes there;
    a marker on the probe's own topic, published after it, ends the wait either way."""
    got: list[str] = []
    done = threading.Event()
    subscribed = threading.Event()
    reader = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    reader.username_pw_set(user, password)
    reader.on_connect = lambda c, _u, _f, rc, _p: (
        c.subscribe([(topic, 1), ("openbranch/hasle/control", 1)]) if not rc.is_failure else None
    )
    reader.on_subscribe = lambda _c, _u, _m, _rc, _p: subscribed.set()

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        got.append(message.topic)
        if message.topic == "openbranch/hasle/control":
            done.set()

    reader.on_message = on_message
    reader.connect(broker.host, broker.port)
    reader.loop_start()
    probe = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    probe.username_pw_set("probe", "probe")
    probe.connect(broker.host, broker.port)
    probe.loop_start()
    try:
        assert subscribed.wait(5), broker.log_tail()
        probe.publish(topic, b"reading", qos=1).wait_for_publish(5)
        probe.publish("openbranch/hasle/control", b"marker", qos=1).wait_for_publish(5)
        assert done.wait(5), broker.log_tail()
        return topic in got
    finally:
        for client in (probe, reader):
            client.disconnect()
            client.loop_stop()


@settings(
    max_examples=4,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(values=ACCEPTABLE)
def test_rendered_acl_passwd_and_bridge_load_into_mosquitto_as_meant(
    values: dict[str, str],
) -> None:
    """Mosquitto loads the rendered password file, ACL and bridge (an unknown directive or a
    bad ACL line stops it), and the gateway reads exactly its device's topic."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inventory = _load(_write_inventory(folder, values))
        secrets = Secrets(folder / "secrets")
        files = render(inventory, secrets)
        (folder / "passwd").write_text(
            files["mosquitto/passwd"] + mosquitto_password_line("probe", "probe") + "\n",
            encoding="utf-8",
        )
        (folder / "acl").write_text(
            files["mosquitto/acl"] + "\nuser probe\ntopic readwrite #\n", encoding="utf-8"
        )
        broker = Mosquitto(
            f"password_file {folder / 'passwd'}\nacl_file {folder / 'acl'}\n"
            + files["mosquitto/bridges/viby.conf"],
            anonymous=False,
        )
        try:
            broker.start()
            (topic,) = (
                d.transport.topic
                for d in inventory.branches[1].devices
                if isinstance(d.transport, MqttTransport)
            )
            assert _receives(broker, "gw-hasle", secrets.get("mqtt/gw-hasle"), topic)
        finally:
            broker.close()
