"""Gateway configuration: valid configs load, every error names file, line and field."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from openbranch.edge.core.config import (
    ModbusTcp,
    SecretRef,
    gateway_json_schema,
    load_gateway_config,
)
from openbranch.edge.core.yamlsource import ConfigError

VALID = """\
branch:
  id: hasle
  name: Hasle Bibliotek
sinks:
  - type: influxdb_v1
    url: http://127.0.0.1:8086
    database: openbranch
    password: {env: OB_INFLUX_PASSWORD}
devices:
  - id: main-meter
    profile: eastron-sdm630
    transport: {type: modbus_tcp, host: 10.0.0.5, unit_id: 1}
    poll: {default: 10s, energy: 1m}
  - id: heat
    profile: kamstrup-multical-603
    transport:
      type: modbus_rtu
      serial_port: /dev/ttyUSB0
      unit_id: 2
      baudrate: 19200
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_gateway_config(write(tmp_path, text))
    return str(info.value)


def test_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_gateway_config(write(tmp_path, VALID))
    assert config.branch.timezone == "Europe/Copenhagen"
    meter, heat = config.devices
    assert isinstance(meter.transport, ModbusTcp)
    assert meter.transport.port == 502
    assert meter.poll == {"default": 10.0, "energy": 60.0}
    assert heat.transport.bus == "serial:///dev/ttyUSB0"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "unit_id: 1}",
            "unit_id: 300}",
            "gateway.yaml:12: devices[0].transport.unit_id: 300 is not in 1..247",
            id="unit-id-range",
        ),
        pytest.param(
            "baudrate: 19200",
            "baudrate: 1234",
            "gateway.yaml:20: devices[1].transport.baudrate:",
            id="baudrate-choice",
        ),
        pytest.param(
            "type: modbus_tcp",
            "type: modbus_udp",
            "gateway.yaml:12: devices[0].transport: type 'modbus_udp' is not one of",
            id="unknown-transport",
        ),
        pytest.param(
            "  name: Hasle Bibliotek\n",
            "",
            "gateway.yaml:1: branch.name: required, but not given",
            id="missing-field",
        ),
        pytest.param(
            "password: {env: OB_INFLUX_PASSWORD}",
            "password: hunter2",
            "gateway.yaml:8: sinks[0].password: secrets are never written in the config",
            id="secret-in-yaml",
        ),
        pytest.param(
            "poll: {default: 10s, energy: 1m}",
            "poll: {default: soon}",
            "gateway.yaml:13: devices[0].poll.default: 'soon' is not a duration",
            id="bad-duration",
        ),
        pytest.param(
            "  name: Hasle Bibliotek\n",
            "  name: Hasle Bibliotek\n  timezone: Europe/Aarhus\n",
            "gateway.yaml:4: branch.timezone: 'Europe/Aarhus' is not an IANA time zone",
            id="bad-timezone",
        ),
        pytest.param(
            "  - id: heat",
            "  - id: main-meter",
            "gateway.yaml:14: devices[1].id: 'main-meter' is already devices[0]",
            id="duplicate-device",
        ),
        pytest.param(
            "    profile: eastron-sdm630\n",
            "    profile: eastron-sdm630\n    colour: red\n",
            "gateway.yaml:12: devices[0].colour: unknown field",
            id="unknown-field",
        ),
        pytest.param(
            "  name: Hasle Bibliotek\n",
            "  name: Hasle Bibliotek\n  name: Again\n",
            "gateway.yaml:4: branch.name: duplicate key",
            id="duplicate-key",
        ),
        pytest.param(
            "devices:\n",
            "devices: [\n",
            "gateway.yaml:",
            id="yaml-syntax",
        ),
    ],
)
def test_error_names_file_line_and_field(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in VALID
    message = error_of(tmp_path, VALID.replace(old, new, 1))
    assert expected in message
    assert len(message.splitlines()) == 1, message


def test_two_devices_on_one_unit_of_one_bus(tmp_path: Path) -> None:
    text = VALID.replace("host: 10.0.0.5, unit_id: 1}", "host: 10.0.0.5, unit_id: 2}") + (
        "  - id: sub-meter\n    profile: eastron-sdm630\n"
        "    transport: {type: modbus_tcp, host: 10.0.0.5, unit_id: 2}\n"
    )
    message = error_of(tmp_path, text)
    assert message == (
        "gateway.yaml:23: devices[2].transport.unit_id: "
        "unit id 2 on tcp://10.0.0.5:502 is already used by devices[0]"
    ).replace("gateway.yaml", str(tmp_path / "gateway.yaml"))


def test_device_check_reports_at_profile_line(tmp_path: Path) -> None:
    def check(device: object) -> None:
        raise ValueError("unknown profile 'x'")

    with pytest.raises(ConfigError) as info:
        load_gateway_config(write(tmp_path, VALID), check_device=check)
    assert (
        str(info.value)
        .splitlines()[0]
        .endswith("gateway.yaml:11: devices[0].profile: unknown profile 'x'")
    )


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OB_TEST_SECRET", "s3cret")
    assert SecretRef(env="OB_TEST_SECRET").resolve() == "s3cret"
    token = tmp_path / "token"
    token.write_text("abc123\n", encoding="utf-8")
    assert SecretRef(file=token).resolve() == "abc123"
    with pytest.raises(LookupError, match="OB_TEST_MISSING"):
        SecretRef(env="OB_TEST_MISSING").resolve()


def test_json_schema_describes_the_config() -> None:
    schema = json.loads(gateway_json_schema())
    assert schema["title"] == "OpenBranch gateway configuration"
    assert set(schema["required"]) == {"branch"}
    text = json.dumps(schema)
    for word in ("modbus_tcp", "modbus_rtu", "modbus_rtu_over_tcp", "mqtt", "influxdb_v2"):
        assert word in text
    assert '"maximum": 247' in text


# --- secrets, resolved where the gateway will need them (issue 13) --------------------------

WITH_KEY = VALID + "control:\n  key: {REF}\n"
KEY_LINE = WITH_KEY.splitlines().index("  key: {REF}") + 1


def _key_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> str:
    """The secret reference of one case, its file or variable prepared."""
    key = tmp_path / "control.key"
    monkeypatch.delenv("OB_TEST_KEY", raising=False)
    monkeypatch.setenv("OB_INFLUX_PASSWORD", "influx")
    if case == "a missing file":
        return f"{{file: {key}}}"
    if case == "a folder":
        key.mkdir()
        return f"{{file: {key}}}"
    if case.startswith("env "):
        if case != "env unset":
            monkeypatch.setenv("OB_TEST_KEY", {"env empty": "", "env blank": "  \t"}[case])
        return "{env: OB_TEST_KEY}"
    content = {
        "an empty file": b"",
        "a blank file": b"  \n\n",
        "a blank first line": b"\nsecret\n",
        "a file that is not UTF-8": b"\xff\xfe\x00",
    }[case]
    key.write_bytes(content)
    return f"{{file: {key}}}"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("a missing file", "cannot read"),
        ("a folder", "cannot read"),
        ("an empty file", "is empty"),
        ("a blank file", "is empty"),
        ("a blank first line", "is empty"),
        ("a file that is not UTF-8", "not UTF-8"),
        ("env unset", "is not set"),
        ("env empty", "is empty"),
        ("env blank", "is empty"),
    ],
)
def test_a_control_key_that_is_missing_or_empty_is_a_located_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, expected: str
) -> None:
    ref = _key_case(tmp_path, monkeypatch, case)
    path = write(tmp_path, WITH_KEY.replace("{REF}", ref))
    assert load_gateway_config(path).control is not None  # the model alone reads no file
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path, secrets=True)
    message = str(info.value)
    assert message.startswith(f"{path}:{KEY_LINE}: control.key: "), message
    assert expected in message
    assert len(message.splitlines()) == 1


def test_a_control_key_that_resolves_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OB_INFLUX_PASSWORD", "influx")
    key = tmp_path / "control.key"
    key.write_text("s3cret\n", encoding="utf-8")
    path = write(tmp_path, WITH_KEY.replace("{REF}", f"{{file: {key}}}"))
    config = load_gateway_config(path, secrets=True)
    assert config.control is not None
    assert config.control.key.resolve() == "s3cret"


def test_resolving_an_empty_key_file_says_so(tmp_path: Path) -> None:
    key = tmp_path / "empty.key"
    key.write_text("", encoding="utf-8")
    with pytest.raises(LookupError, match="is empty"):
        SecretRef(file=key).resolve()


# --- limits and located errors for what an operator can write (issue 13) -------------------

ALIAS_BOMB = (
    'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)
HOURS = "hours:\n  exceptions:\n    - {date: DATE, closed: true}\n"
ZONE = VALID.replace(
    "    profile: eastron-sdm630\n", "    profile: eastron-sdm630\n    zone: ZONE\n"
)


def _err(tmp_path: Path, text: str, *, raw: bytes | None = None) -> str:
    path = tmp_path / "gateway.yaml"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    assert time.monotonic() - started < 5, "the loader took too long"
    return str(info.value).replace(str(path), "gateway.yaml")


LIMITS = [
    pytest.param(ALIAS_BOMB, None, "gateway.yaml:", "aliases", id="alias-bomb"),
    pytest.param(
        "a: [" + "[" * 5000 + "]" * 5000 + "]\n", None, "gateway.yaml:", "nested", id="deep"
    ),
    pytest.param(
        "branch: {id: x, name: y}\nnote: '" + "x" * 1_100_000 + "'\n",
        None,
        "gateway.yaml: ",
        "larger than 1,000,000 bytes",
        id="oversize",
    ),
    pytest.param(
        VALID + HOURS.replace("DATE", "2026-02-30"),
        None,
        "gateway.yaml:23: hours.exceptions[0].date:",
        "2026-02-30",
        id="february-30",
    ),
    pytest.param(
        VALID + HOURS.replace("DATE", "9999-99-99"),
        None,
        "gateway.yaml:23: hours.exceptions[0].date:",
        "9999-99-99",
        id="month-99",
    ),
    pytest.param(
        VALID.replace("name: Hasle Bibliotek", 'name: "Hasle\\0 Bibliotek"'),
        None,
        "gateway.yaml:3: branch.name:",
        "control character U+0000",
        id="escaped-nul",
    ),
    pytest.param(
        VALID.replace("name: Hasle Bibliotek", 'name: "Hasle\\e Bibliotek"'),
        None,
        "gateway.yaml:3: branch.name:",
        "control character U+001B",
        id="escaped-escape",
    ),
    pytest.param(
        "",
        VALID.replace("name: Hasle Bibliotek", "name: Hasle\x01Bibliotek").encode(),
        "gateway.yaml:3:",
        "control character",
        id="raw-control-byte",
    ),
    pytest.param(
        "",
        VALID.replace("name: Hasle Bibliotek", "name: Hasle\x00Bibliotek").encode(),
        "gateway.yaml:3:",
        "control character",
        id="raw-nul",
    ),
    pytest.param(
        VALID.replace("{default: 10s, energy: 1m}", "{default: 1" + "0" * 400 + "}"),
        None,
        "gateway.yaml:13: devices[0].poll.default:",
        "too long",
        id="poll-10**400",
    ),
    pytest.param(
        VALID.replace("{default: 10s, energy: 1m}", "{default: .nan}"),
        None,
        "gateway.yaml:13: devices[0].poll.default:",
        "not a duration",
        id="poll-nan",
    ),
    pytest.param(
        VALID.replace("{default: 10s, energy: 1m}", "{default: .inf}"),
        None,
        "gateway.yaml:13: devices[0].poll.default:",
        "not a duration",
        id="poll-inf",
    ),
    pytest.param(
        VALID + "mqtt: {keepalive: .nan}\n",
        None,
        "gateway.yaml:21: mqtt.keepalive:",
        "not a duration",
        id="keepalive-nan",
    ),
    pytest.param(
        VALID + "mqtt: {keepalive: .inf}\n",
        None,
        "gateway.yaml:21: mqtt.keepalive:",
        "not a duration",
        id="keepalive-inf",
    ),
    pytest.param(
        VALID + "mqtt: {session_expiry: 1e400}\n",
        None,
        "gateway.yaml:21: mqtt.session_expiry:",
        "not a duration",
        id="expiry-1e400",
    ),
    pytest.param(
        VALID.replace("database: openbranch", "database: 'lib\"raries'"),
        None,
        "gateway.yaml:7: sinks[0].database:",
        "quote",
        id="database-with-a-quote",
    ),
    pytest.param(
        VALID.replace("database: openbranch", 'database: "lib\\nraries"'),
        None,
        "gateway.yaml:7: sinks[0].database:",
        "control character",
        id="database-with-a-newline",
    ),
    pytest.param(
        ZONE.replace("ZONE", '"hall\\nenergy,branch=x v=1 1"'),
        None,
        "gateway.yaml:12: devices[0].zone:",
        "control character U+000A",
        id="zone-with-a-newline",
    ),
    pytest.param(
        ZONE.replace("ZONE", '"hall\\tA"'),
        None,
        "gateway.yaml:12: devices[0].zone:",
        "control character U+0009",
        id="zone-with-a-tab",
    ),
    pytest.param(
        ZONE.replace("ZONE", '""'),
        None,
        "gateway.yaml:12: devices[0].zone:",
        "empty",
        id="zone-empty",
    ),
    pytest.param(
        VALID.replace("  - id: heat\n", '  - id: heat\n    "a\\0b": 1\n'),
        None,
        "gateway.yaml:",
        "control character U+0000",
        id="key-with-nul",
    ),
]


@pytest.mark.parametrize(("text", "raw", "where", "what"), LIMITS)
def test_what_an_operator_can_write_is_a_located_error(
    tmp_path: Path, text: str, raw: bytes | None, where: str, what: str
) -> None:
    message = _err(tmp_path, text, raw=raw)
    first = message.splitlines()[0]
    assert first.startswith(where), message
    assert what in message, message


def test_aliases_within_the_limit_load(tmp_path: Path) -> None:
    text = VALID.replace("{default: 10s, energy: 1m}", "&p {default: 10s, energy: 1m}").replace(
        "      baudrate: 19200\n", "      baudrate: 19200\n    poll: *p\n"
    )
    config = load_gateway_config(write(tmp_path, text))
    assert config.devices[1].poll == {"default": 10.0, "energy": 60.0}


def test_the_demo_config_with_its_aliases_loads() -> None:
    config = load_gateway_config(Path(__file__).parents[3] / "examples" / "demo" / "gateway.yaml")
    assert config.hours is not None
