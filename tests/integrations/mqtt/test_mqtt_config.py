"""MQTT settings that paho or the broker would refuse only once the gateway runs (inside the
session, as an exception or a dropped connection) are refused when the config is loaded, with
the file, the line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from openbranch.edge.core.config import MqttConfig, load_gateway_config
from openbranch.edge.core.yamlsource import ConfigError

VALID = """\
branch:
  id: hasle
  name: Hasle Bibliotek
mqtt:
  host: 127.0.0.1
  keepalive: 30s
  topic_prefix: openbranch
devices:
  - id: front-door
    profile: aqara-door-contact
    transport: {type: mqtt, topic: zigbee2mqtt/front-door}
"""


def error_of(tmp_path: Path, old: str, new: str) -> str:
    assert old in VALID
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(VALID.replace(old, new)), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    return str(info.value)


def test_the_valid_config_loads_with_a_persistent_session(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(VALID, encoding="utf-8")
    mqtt = load_gateway_config(path).mqtt
    assert mqtt is not None
    assert (mqtt.keepalive, mqtt.client_id, mqtt.session_expiry) == (30.0, None, 86400.0)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "topic: zigbee2mqtt/front-door}",
            "topic: ''}",
            "gateway.yaml:11: devices[0].transport.topic: must not be empty",
            id="empty-device-topic",
        ),
        pytest.param(
            "topic: zigbee2mqtt/front-door}",
            "topic: " + "t" * 65_536 + "}",
            "gateway.yaml:11: devices[0].transport.topic: is 65,536 bytes; MQTT allows 65,535",
            id="device-topic-too-long",
        ),
        pytest.param(
            "topic: zigbee2mqtt/front-door}",
            "topic: 'zigbee2mqtt/#'}",
            "gateway.yaml:11: devices[0].transport.topic: names one device's topic: no '+', '#'",
            id="device-topic-wildcard",
        ),
        pytest.param(
            "keepalive: 30s",
            "keepalive: 70000",
            "gateway.yaml:6: mqtt.keepalive: must be whole seconds, 0 (off) to 65535",
            id="keepalive-over-65535",
        ),
        pytest.param(
            "keepalive: 30s",
            "keepalive: 500ms",
            "gateway.yaml:6: mqtt.keepalive: must be whole seconds",
            id="keepalive-fraction",
        ),
        pytest.param(
            "topic_prefix: openbranch",
            "topic_prefix: 'ob/+'",
            "gateway.yaml:7: mqtt.topic_prefix: a topic prefix must not contain '+', '#'",
            id="prefix-wildcard",
        ),
        pytest.param(
            "host: 127.0.0.1",
            "host: ''",
            "gateway.yaml:5: mqtt.host:",
            id="empty-host",
        ),
        pytest.param(
            "host: 127.0.0.1",
            "host: 127.0.0.1\n  session_expiry: 5000000000",
            "gateway.yaml:6: mqtt.session_expiry: ",  # (MQTT v5 sends it in 32 bits)
            id="session-expiry-over-32-bits",
        ),
        pytest.param(
            "host: 127.0.0.1",
            "host: 127.0.0.1\n  session_expiry: 1.5",
            "gateway.yaml:6: mqtt.session_expiry: must be whole seconds, 0 (no persistent",
            id="session-expiry-fraction",
        ),
        pytest.param(
            "host: 127.0.0.1",
            "host: 127.0.0.1\n  client_id: ''",
            "gateway.yaml:6: mqtt.client_id: must be 1 to 65,535 bytes",
            id="empty-client-id",
        ),
    ],
)
def test_a_setting_mqtt_refuses_is_located(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    message = error_of(tmp_path, old, new)
    assert expected in message, message


def test_session_settings_have_their_limits() -> None:
    assert MqttConfig(keepalive=0).keepalive == 0  # MQTT: no keep-alive
    assert MqttConfig(keepalive=65535).keepalive == 65535
    assert MqttConfig(session_expiry=0).session_expiry == 0  # a clean session every time
    assert MqttConfig(session_expiry="1h").session_expiry == 3600
    assert MqttConfig(client_id="gw-hasle").client_id == "gw-hasle"
