"""The gateway's configuration: one YAML file per branch gateway, validated by these models.

Secrets never sit in the YAML: a password or token is a reference, ``{env: NAME}`` or
``{file: PATH}``, resolved when the gateway starts. Errors name the file, the line and the
field (see ``edge.yamlsource``).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from openbranch.edge.core.admission import EntryConfig
from openbranch.edge.core.imported import WebsiteHours
from openbranch.edge.core.schedule import Actuator, ClosingPolicy, OpeningHours
from openbranch.edge.core.yamlsource import (
    ConfigError,
    Document,
    Location,
    Problem,
    control_character,
    load_yaml,
    validate,
)

__all__ = [
    "DEFAULT_HEARTBEAT",
    "BranchConfig",
    "DeviceConfig",
    "GatewayConfig",
    "HomeAssistantConfig",
    "InfluxV1Sink",
    "InfluxV2Sink",
    "ModbusRtu",
    "ModbusRtuOverTcp",
    "ModbusTcp",
    "MqttConfig",
    "MqttTransport",
    "SecretRef",
    "SinkConfig",
    "Sip2Config",
    "StoreConfig",
    "Transport",
    "device_problems",
    "gateway_json_schema",
    "load_gateway_config",
    "secret_problems",
]


def _range_check(lo: int, hi: int) -> AfterValidator:
    """Reject ints outside lo..hi with ``300 is not in 1..247``."""

    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise ValueError(f"{value} is not in {lo}..{hi}")
        return value

    return AfterValidator(check)


def _range_schema(lo: int, hi: int) -> WithJsonSchema:
    return WithJsonSchema({"type": "integer", "minimum": lo, "maximum": hi})


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


MAX_DURATION = float(0xFFFFFFFF)  # seconds (136 years): MQTT's longest session expiry


def _duration(value: object) -> float:
    what = f"{value!r}" if not isinstance(value, int) or abs(value) < 10**20 else "the number"
    if isinstance(value, bool):
        raise ValueError(f"{what} is not a duration (use seconds, or '500ms', '10s', '5m')")
    if isinstance(value, int) and value > MAX_DURATION:
        raise ValueError(f"{what} is too long (at most {MAX_DURATION:.0f} s)")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (match := _DURATION.match(value)):
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        else:
            raise ValueError
    except (ValueError, OverflowError):
        raise ValueError(
            f"{what} is not a duration (use seconds, or '500ms', '10s', '5m')"
        ) from None
    if not math.isfinite(seconds):
        raise ValueError(f"{what} is not a duration (a finite number of seconds)")
    if seconds < 0:
        raise ValueError(f"{what} is negative")
    if seconds > MAX_DURATION:
        raise ValueError(f"{what} is too long (at most {MAX_DURATION:.0f} s)")
    return seconds


def _tag_value(value: str | None) -> str | None:
    """Text that becomes a tag value in line protocol (and a topic's part): not empty, no
    control character (a newline would end the line, a tab is a separator to some readers)."""
    if value is None:
        return value
    if not value:
        raise ValueError("must not be empty (leave it out instead)")
    if (char := control_character(value)) is not None:
        raise ValueError(f"control character {char} is not allowed")
    return value


def _database_name(value: str) -> str:
    """An InfluxDB database, bucket or organisation name, as the write API's query string and
    InfluxQL (``"name"``) take it: no quote, backslash or control character."""
    if (char := control_character(value)) is not None:
        raise ValueError(f"control character {char} is not allowed")
    if any(c in value for c in "\"'\\"):
        raise ValueError("must not contain a quote or a backslash")
    if value != value.strip():
        raise ValueError("must not start or end with a space")
    return value


DatabaseName = Annotated[str, AfterValidator(_database_name)]


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": _DURATION.pattern},
            ],
            "description": "seconds, or a string such as '500ms', '10s', '5m', '1h'",
        }
    ),
]
Port = Annotated[int, _range_check(1, 65535), _range_schema(1, 65535)]
UnitId = Annotated[int, _range_check(1, 247), _range_schema(1, 247)]
BatchSize = Annotated[int, _range_check(1, 100_000), _range_schema(1, 100_000)]
DrainRate = Annotated[int, _range_check(1, 10_000_000), _range_schema(1, 10_000_000)]
MAX_RATE_HELP = (
    "at most this many lines a second to this database, so a fleet catching up after a "
    "central outage does not overload it (docs/SCALE.md); default: unlimited"
)
DiskBound = Annotated[int, _range_check(1_000_000, 2**40), _range_schema(1_000_000, 2**40)]
RegisterGap = Annotated[int, _range_check(0, 125), _range_schema(0, 125)]
Identifier = Annotated[
    str,
    Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$"),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """Where a secret comes from: an environment variable or a file (first line)."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_a_value(cls, data: object) -> object:
        if isinstance(data, str):
            raise ValueError(
                "secrets are never written in the config: use {env: VARIABLE} or {file: PATH}"
            )
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def resolve(self) -> str:
        """The secret; LookupError (saying why) when it is not there or is empty."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise LookupError(f"environment variable {self.env} is not set")
            if not value.strip():
                raise LookupError(f"environment variable {self.env} is empty")
            return value
        assert self.file is not None
        try:
            text = self.file.read_text(encoding="utf-8")
        except OSError as exc:
            raise LookupError(f"cannot read {self.file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise LookupError(f"{self.file} is not UTF-8 text") from None
        lines = text.splitlines()
        value = lines[0].strip() if lines else ""
        if not value:
            raise LookupError(f"{self.file} is empty (the secret is its first line)")
        return value


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Copenhagen)") from None
    return name


class BranchConfig(_Model):
    id: Identifier
    name: str
    timezone: Annotated[str, AfterValidator(_zone)] = "Europe/Copenhagen"


class MqttConfig(_Model):
    """The branch's broker and the gateway's session with it (edge.runtime.mqtt). Values MQTT
    or paho would refuse only once connected (a keep-alive over 65,535 s, a topic prefix with
    a wildcard) are refused here, where the error can name the line."""

    @staticmethod
    def _keepalive(seconds: float) -> float:
        if seconds != int(seconds) or seconds > 65535:
            raise ValueError("must be whole seconds, 0 (off) to 65535 (MQTT's limit)")
        return seconds

    @staticmethod
    def _prefix(prefix: str) -> str:
        if "+" in prefix or "#" in prefix or "\x00" in prefix:
            raise ValueError("a topic prefix must not contain '+', '#' or U+0000")
        if len(prefix.encode("utf-8")) > 60000:
            raise ValueError("too long for an MQTT topic (65,535 bytes with the branch's part)")
        return prefix

    @staticmethod
    def _client_id(client_id: str | None) -> str | None:
        if client_id is not None and not 1 <= len(client_id.encode("utf-8")) <= 65535:
            raise ValueError("must be 1 to 65,535 bytes (MQTT's limit)")
        if client_id is not None and "\x00" in client_id:
            raise ValueError("must not contain U+0000")
        return client_id

    @staticmethod
    def _expiry(seconds: float) -> float:
        if seconds != int(seconds) or seconds > 0xFFFFFFFF:
            raise ValueError("must be whole seconds, 0 (no persistent session) to 4294967295")
        return seconds

    host: str = Field(default="127.0.0.1", min_length=1)
    port: Port = 1883
    username: str | None = None
    password: SecretRef | None = None
    tls: bool = False
    tls_ca: Path | None = Field(
        default=None,
        description="with tls: the CA certificate (PEM file) that signed the broker's "
        "certificate, e.g. the fleet's private CA; default: the system's CA store",
    )
    keepalive: Annotated[Duration, AfterValidator(_keepalive)] = 30.0
    topic_prefix: Annotated[str, AfterValidator(_prefix)] = "openbranch"
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        default="auto", description="auto: MQTT v5 when the broker offers it, else 3.1.1"
    )
    client_id: Annotated[str | None, AfterValidator(_client_id)] = Field(
        default=None,
        description="the session's MQTT client id (default openbranch-<branch id>); stable, so "
        "the broker keeps the session's subscriptions and QoS 1 messages across restarts. "
        "Two gateways with one id take the session from each other",
    )
    session_expiry: Annotated[Duration, AfterValidator(_expiry)] = Field(
        default=86400.0,
        description="how long the broker keeps the session while the gateway is away (MQTT v5; "
        "3.1.1 brokers keep it until their own limit); 0: a clean session at every connect",
    )


class InfluxV1Sink(_Model):
    """InfluxDB 1.x write API (also InfluxDB 3.x's v1 compatibility)."""

    type: Literal["influxdb_v1"]
    url: str
    database: DatabaseName = Field(min_length=1)
    username: str | None = None
    password: SecretRef | None = None
    batch_size: BatchSize = 5000
    flush_interval: Duration = 1.0
    max_rate: DrainRate | None = Field(default=None, description=MAX_RATE_HELP)


class InfluxV2Sink(_Model):
    """InfluxDB v2 write API (InfluxDB 2.x, 3.x, 1.8+)."""

    type: Literal["influxdb_v2"]
    url: str
    org: DatabaseName = ""
    bucket: DatabaseName = Field(min_length=1)
    token: SecretRef | None = None
    batch_size: BatchSize = 5000
    flush_interval: Duration = 1.0
    max_rate: DrainRate | None = Field(default=None, description=MAX_RATE_HELP)


SinkConfig = Annotated[InfluxV1Sink | InfluxV2Sink, Field(discriminator="type")]


DEFAULT_HEARTBEAT = 900.0  # seconds: each device series is written at least this often


class StoreConfig(_Model):
    """The local store (the outbox): where readings wait and the branch's local history."""

    path: Path = Path("/var/lib/openbranch/outbox.db")
    max_bytes: DiskBound = 1_000_000_000
    heartbeat: Duration = Field(
        default=DEFAULT_HEARTBEAT,
        description="report by exception: a device reading is written when it changed (by "
        "more than its point's deadband), and each series at least this often; 0 writes "
        "every reading",
    )


class _ModbusOptions(_Model):
    unit_id: UnitId = 1
    timeout: Duration = 1.0
    pause_after_connect: Duration = 0.0
    pause_between_requests: Duration = 0.0
    max_gap: RegisterGap | None = Field(
        default=None, description="merge reads across at most this many unused registers"
    )
    one_request_per_point: bool = Field(
        default=False, description="escape hatch for devices that reject multi-point reads"
    )


class ModbusTcp(_ModbusOptions):
    type: Literal["modbus_tcp"]
    host: str
    port: Port = 502

    @property
    def bus(self) -> str:
        return f"tcp://{self.host}:{self.port}"


class ModbusRtuOverTcp(_ModbusOptions):
    type: Literal["modbus_rtu_over_tcp"]
    host: str
    port: Port = 502

    @property
    def bus(self) -> str:
        return f"rtu+tcp://{self.host}:{self.port}"


class ModbusRtu(_ModbusOptions):
    type: Literal["modbus_rtu"]
    serial_port: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1

    @property
    def bus(self) -> str:
        return f"serial://{self.serial_port}"


class MqttTransport(_Model):
    @staticmethod
    def _topic(topic: str) -> str:
        size = len(topic.encode("utf-8"))
        if size == 0:
            raise ValueError("must not be empty")
        if size > 65535:
            raise ValueError(f"is {size:,} bytes; MQTT allows 65,535")
        if "+" in topic or "#" in topic or "\x00" in topic:
            raise ValueError("names one device's topic: no '+', '#' or U+0000")
        return topic

    type: Literal["mqtt"]
    topic: Annotated[str, AfterValidator(_topic)] = Field(
        description="the topic (or topic prefix) the device publishes on"
    )

    @property
    def bus(self) -> str:
        return "mqtt"


Transport = Annotated[
    ModbusTcp | ModbusRtuOverTcp | ModbusRtu | MqttTransport, Field(discriminator="type")
]


class DeviceConfig(_Model):
    id: Identifier
    profile: str
    name: str | None = None
    zone: Annotated[str | None, AfterValidator(_tag_value)] = Field(
        default=None, description="where the device is (a tag of its readings)"
    )
    transport: Transport
    poll: dict[str, Duration] = Field(
        default_factory=lambda: {"default": 10.0},
        description="poll interval per point group of the profile; 'default' for the rest",
    )

    @model_validator(mode="after")
    def _poll_positive(self) -> DeviceConfig:
        for group, seconds in self.poll.items():
            if seconds <= 0:
                raise ValueError(f"poll interval of group {group!r} must be above 0")
        return self


class SafetyConfig(_Model):
    """Safety inputs (read only: the gateway is never in the fire-safety chain)."""

    fire_alarm_device: str | None = Field(
        default=None, description="device whose alert.active reading is the fire alarm input"
    )


class ControlConfig(_Model):
    """Signed remote control over MQTT (see edge/control.py)."""

    key: SecretRef = Field(description="this gateway's HMAC key, from provisioning")


class HomeAssistantConfig(_Model):
    """Home Assistant MQTT discovery (integrations/homeassistant): every device, the branch
    mode and the gateway's health appear in Home Assistant by themselves."""

    enabled: bool = True
    discovery_prefix: str = Field(
        default="homeassistant",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="Home Assistant's MQTT discovery prefix",
    )


class Sip2Config(_Model):
    """The library system over SIP2 2.00 (integrations/sip2): one connection per gateway.

    The terminal's login is a pair of secret references; the card's PIN is never configured
    or stored anywhere."""

    type: Literal["sip2"] = "sip2"
    host: str = Field(min_length=1, description="the library system's SIP2 server (ACS)")
    port: Port = 6001
    tls: bool = Field(default=False, description="TLS to the server (or to its TLS front)")
    tls_ca: Path | None = Field(
        default=None,
        description="with tls: the CA certificate (PEM) that signed the server's certificate; "
        "default: the system's CA store",
    )
    tls_server_name: str | None = Field(
        default=None, description="with tls: the name the certificate must carry (default host)"
    )
    institution_id: str = Field(min_length=1, max_length=255, description="SIP2 AO")
    login_user: SecretRef | None = Field(default=None, description="SIP2 CN (93 login)")
    login_password: SecretRef | None = Field(default=None, description="SIP2 CO (93 login)")
    terminal_password: SecretRef | None = Field(
        default=None, description="SIP2 AC, where the library system asks for one"
    )
    location_code: str | None = Field(default=None, max_length=255, description="SIP2 CP")
    request: Literal["patron_information", "patron_status"] = Field(
        default="patron_information",
        description="ask with 63 (patron information: status, fees, birth date where given) "
        "or 23 (patron status)",
    )
    checksums: bool = Field(default=True, description="send sequence numbers and checksums (AY/AZ)")
    encoding: Literal["utf-8", "cp850", "latin-1"] = "utf-8"
    timeout: Duration = Field(default=3.0, description="connect, login and each request")
    queue_size: Annotated[int, _range_check(1, 1000), _range_schema(1, 1000)] = Field(
        default=16, description="lookups waiting for the one connection; more are refused"
    )
    reconnect_max: Duration = Field(
        default=30.0, description="longest wait between reconnect attempts (doubling from 0.5 s)"
    )

    @model_validator(mode="after")
    def _login_pair(self) -> Sip2Config:
        if (self.login_user is None) != (self.login_password is None):
            raise ValueError("give both login_user and login_password, or neither")
        if self.timeout <= 0:
            raise ValueError("timeout must be above 0")
        return self


class GatewayConfig(_Model):
    branch: BranchConfig
    hours: OpeningHours | None = Field(
        default=None, description="the branch's opening hours (closed all the time if absent)"
    )
    website_hours: WebsiteHours | None = Field(
        default=None, description="hours published on the library's website (openbranch hours)"
    )
    closing: ClosingPolicy = Field(default_factory=ClosingPolicy)
    actuators: list[Actuator] = Field(
        default_factory=list, description="device points that follow the desired state"
    )
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    control: ControlConfig | None = None
    mqtt: MqttConfig | None = None
    sinks: list[SinkConfig] = Field(default_factory=list)
    store: StoreConfig = StoreConfig()
    devices: list[DeviceConfig] = Field(default_factory=list)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    library_system: Sip2Config | None = Field(
        default=None, description="the library system asked about cards (self-service entry)"
    )
    entry: EntryConfig | None = Field(
        default=None, description="self-service entry: card readers, the rules, the offline policy"
    )


def device_problems(
    devices: Sequence[DeviceConfig], doc: Document, at: Location = ("devices",)
) -> list[Problem]:
    """Duplicate device ids, and two devices on one unit id of one bus, located at ``at``."""
    problems = []
    seen: dict[str, int] = {}
    units: dict[tuple[str, int], int] = {}
    for i, device in enumerate(devices):
        if device.id in seen:
            problems.append(
                doc.problem((*at, i, "id"), f"{device.id!r} is already devices[{seen[device.id]}]")
            )
        seen.setdefault(device.id, i)
        unit = getattr(device.transport, "unit_id", None)
        if unit is not None:
            key = (device.transport.bus, unit)
            if key in units:
                problems.append(
                    doc.problem(
                        (*at, i, "transport", "unit_id"),
                        f"unit id {unit} on {key[0]} is already used by devices[{units[key]}]",
                    )
                )
            units.setdefault(key, i)
    return problems


def _cross_check(config: GatewayConfig, doc: Document) -> None:
    problems = device_problems(config.devices, doc)
    ids = {d.id for d in config.devices}
    for i, actuator in enumerate(config.actuators):
        if actuator.device not in ids:
            problems.append(
                doc.problem(("actuators", i, "device"), f"no device {actuator.device!r} in devices")
            )
    fire = config.safety.fire_alarm_device
    if fire is not None and fire not in ids:
        problems.append(doc.problem(("safety", "fire_alarm_device"), f"no device {fire!r}"))
    problems += _entry_problems(config, doc, ids)
    if problems:
        raise ConfigError(problems)


def _entry_problems(config: GatewayConfig, doc: Document, ids: set[str]) -> list[Problem]:
    """Readers, doors and counters of ``entry`` that are not devices, and a pulsed point that
    the opening hours also hold."""
    if config.entry is None:
        return []
    problems = []
    held = {(a.device, a.point) for a in config.actuators}
    for i, link in enumerate(config.entry.readers):
        for key in ("reader", "door", "counter"):
            device = getattr(link, key)
            if device is not None and device not in ids:
                problems.append(doc.problem(("entry", "readers", i, key), f"no device {device!r}"))
        if (link.door, link.unlock_point) in held:
            problems.append(
                doc.problem(
                    ("entry", "readers", i, "unlock_point"),
                    f"{link.door}.{link.unlock_point} follows the opening hours (actuators); "
                    "the unlock pulse needs a point of its own",
                )
            )
    return problems


DeviceCheck = Callable[[DeviceConfig], None]


def secret_problems(config: GatewayConfig, doc: Document) -> list[Problem]:
    """Every secret reference of ``config`` that does not resolve to a value (an unset or
    empty variable, a missing, unreadable or empty file), located at its line."""
    refs: list[tuple[Location, SecretRef | None]] = [
        (("control", "key"), config.control.key if config.control else None),
        (("mqtt", "password"), config.mqtt.password if config.mqtt else None),
    ]
    if (library := config.library_system) is not None:
        refs += [
            (("library_system", "login_user"), library.login_user),
            (("library_system", "login_password"), library.login_password),
            (("library_system", "terminal_password"), library.terminal_password),
        ]
    for i, sink in enumerate(config.sinks):
        secret = sink.password if isinstance(sink, InfluxV1Sink) else sink.token
        refs.append(
            (("sinks", i, "password" if isinstance(sink, InfluxV1Sink) else "token"), secret)
        )
    problems = []
    for loc, ref in refs:
        if ref is None:
            continue
        try:
            ref.resolve()
        except LookupError as exc:
            problems.append(doc.problem(loc, str(exc)))
    return sorted(problems, key=lambda p: p.line or 0)


def load_gateway_config(
    path: Path | str, *, check_device: DeviceCheck | None = None, secrets: bool = False
) -> GatewayConfig:
    """Load and validate a gateway config.

    ``check_device`` (from the integration registry) validates what the models cannot, such as
    whether the profile exists and fits the transport; its ValueError is reported at the device's
    ``profile`` line. ``secrets``: resolve every secret reference now (``gateway check`` and
    ``gateway run`` on the gateway itself; a build machine has no secrets) and report one that
    is missing or empty at its line: an empty control key would let anyone sign.
    """
    doc = load_yaml(path)
    config = validate(GatewayConfig, doc)
    _cross_check(config, doc)
    if secrets and (problems := secret_problems(config, doc)):
        raise ConfigError(problems)
    if check_device is not None:
        problems = []
        for i, device in enumerate(config.devices):
            try:
                check_device(device)
            except ValueError as exc:
                problems.append(doc.problem(("devices", i, "profile"), str(exc)))
        if problems:
            raise ConfigError(problems)
    website = config.website_hours
    if website is not None and website.folder is None:  # its files are beside the config
        folder = str(Path(path).resolve().parent)
        website = website.model_copy(update={"folder": folder})
        config = config.model_copy(update={"website_hours": website})
    return config


def gateway_json_schema() -> str:
    schema = GatewayConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "OpenBranch gateway configuration"
    return json.dumps(schema, indent=2)
