"""Everything rendered from the inventory: gateway configs and the broker's accounts and ACLs.

Rendering is pure: inventory and secrets in, files (path -> text) out. Secrets appear in
rendered gateway configs only as references ({file: ...}); the broker's password file holds
salted PBKDF2 hashes in Mosquitto's own format, never a password.

Every writer writes for its format: YAML only through ``yaml.safe_dump`` of data (comments
escape what is not printable), Mosquitto's config, ACL, password and bridge lines only values
that cannot start a new line or split into more fields than meant. The inventory refuses such
values first (``provisioning.text``); a writer that is handed one anyway raises RenderError.

Exceptions:
    RenderError        a value the format of its file cannot hold as given
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Mapping
from secrets import token_bytes
from typing import Any

import yaml

from openbranch.dashboards import ALERT_RULES_FILE, BranchInfo, Fleet
from openbranch.dashboards import build as build_dashboards
from openbranch.dashboards.model import DATASOURCE
from openbranch.edge.core.config import HomeAssistantConfig, MqttTransport
from openbranch.edge.core.schedule import OpeningHours
from openbranch.integrations.mqtt.profile import CATALOGUE as MQTT_PROFILES
from openbranch.integrations.mqtt.profile import MqttProfile
from openbranch.provisioning.influx import setup_for
from openbranch.provisioning.inventory import Branch, Defaults, Inventory
from openbranch.provisioning.secrets import Secrets
from openbranch.provisioning.text import comment, control_problem, host_problem, topic_problem

__all__ = [
    "FILE_MODES",
    "GATEWAY_SECRETS",
    "PBKDF2_ITERATIONS",
    "RenderError",
    "dump_yaml",
    "fleet_of",
    "mosquitto_password_line",
    "prefix_of",
    "render",
    "render_gateway",
    "user_of",
]


class RenderError(ValueError):
    """A value that its file's format cannot hold as given (``str()`` names where it came
    from); the inventory refuses such values, so this is a second line of defence."""


def _one_field(value: str, *, where: str, blanks: bool = False) -> str:
    """``value`` as the last field of a Mosquitto config, ACL or password line: not empty, no
    control character (a newline would start a new directive), no blank at either end (Mosquitto
    trims them), and no blank at all unless the directive takes the rest of the line."""
    problem = control_problem(value)
    if problem is None and not value:
        problem = "empty"
    if problem is None and value != value.strip(" "):
        problem = "blanks at either end would be trimmed"
    if problem is None and not blanks and " " in value:
        problem = "a blank would split it into more fields"
    if problem is not None:
        raise RenderError(f"{where}: {problem}")
    return value


def dump_yaml(data: object, *, where: str) -> str:
    """``data`` as YAML that parses back to ``data``: Unicode written as itself where PyYAML
    reads it back unchanged, else every non-ASCII character escaped (PyYAML writes U+0085 raw
    in a quoted scalar and reads it back as a blank)."""
    for allow_unicode in (True, False):
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=allow_unicode)
        if yaml.safe_load(text) == data:
            return text
    raise RenderError(f"{where}: the data does not survive YAML (a NaN or a non-string key?)")


def _literal_topic(topic: str, *, where: str) -> str:
    problem = topic_problem(topic, dollar=False)
    if problem is not None:
        raise RenderError(f"{where}: {problem}")
    return topic


GATEWAY_SECRETS = "/etc/openbranch"  # where a gateway finds its secret files
CENTRAL_CA = f"{GATEWAY_SECRETS}/central-ca.crt"  # the CA that signed the central broker
TOPIC_PREFIX = "openbranch"  # the gateways' default (MqttConfig.topic_prefix)
OPERATIONS, DASHBOARDS, HOME_ASSISTANT = "operations", "dashboards", "homeassistant"
DISCOVERY = HomeAssistantConfig().discovery_prefix  # the gateways' default discovery prefix


def _discovery(branch: Branch) -> str:
    """The Home Assistant discovery configs one gateway publishes (integrations/homeassistant)."""
    return f"{DISCOVERY}/+/openbranch_{branch.id}/+/config"


def prefix_of(inventory: Inventory) -> str:
    """The fleet's topic prefix: what every gateway publishes under and the ACL grants."""
    mqtt = inventory.defaults.mqtt
    return mqtt.topic_prefix if mqtt is not None else TOPIC_PREFIX


def user_of(branch: Branch) -> str:
    return f"gw-{branch.id}"


def _hours_of(branch: Branch, defaults: Defaults) -> OpeningHours | None:
    """The branch's own hours, or the fleet's; municipality-wide closures in the fleet's
    hours apply to every branch, also one with its own hours (its own entry for a date wins)."""
    if branch.hours is None or defaults.hours is None:
        return branch.hours or defaults.hours
    own = {c.date for c in branch.hours.municipality_closures}
    merged = [
        *branch.hours.municipality_closures,
        *(c for c in defaults.hours.municipality_closures if c.date not in own),
    ]
    return branch.hours.model_copy(
        update={"municipality_closures": sorted(merged, key=lambda c: c.date)}
    )


def render_gateway(inventory: Inventory, branch: Branch) -> dict[str, Any]:
    """A gateway config (as data) for ``branch``: fleet defaults, then the branch's own."""
    d = inventory.defaults
    config: dict[str, Any] = {
        "branch": {
            "id": branch.id,
            "name": branch.name,
            "timezone": branch.timezone or inventory.municipality.timezone,
        },
        "store": {"path": "/var/lib/openbranch/outbox.db"},
        "devices": [dev.model_dump(mode="json", exclude_defaults=True) for dev in branch.devices],
    }
    if d.mqtt is not None:
        mqtt = d.mqtt.model_dump(mode="json", exclude_defaults=True)
        mqtt.update(
            username=user_of(branch),
            password={"file": f"{GATEWAY_SECRETS}/mqtt-password"},
            topic_prefix=prefix_of(inventory),
        )
        if d.mqtt.tls and d.mqtt.tls_ca is None:  # the central broker's certificate is the
            mqtt["tls_ca"] = CENTRAL_CA  # fleet's own CA's (see the Mosquitto TLS listener)
        config["mqtt"] = mqtt
        config["control"] = {"key": {"file": f"{GATEWAY_SECRETS}/control.key"}}
    sinks = []
    for sink in d.sinks:
        data = sink.model_dump(mode="json", exclude_defaults=True)
        if sink.type == "influxdb_v1":
            data.update(username=user_of(branch), password={"file": f"{GATEWAY_SECRETS}/influxdb"})
        else:
            data["token"] = {"file": f"{GATEWAY_SECRETS}/influxdb"}
        sinks.append(data)
    if sinks:
        config["sinks"] = sinks
    hours = _hours_of(branch, d)
    if hours is not None:
        config["hours"] = hours.model_dump(mode="json", exclude_defaults=True)
    if branch.website_hours is not None:  # its files in the state directory (decision 76)
        website = branch.website_hours.model_copy(update={"folder": GATEWAY_STATE})
        config["website_hours"] = website.model_dump(mode="json", exclude_defaults=True)
    closing = d.closing.model_dump(mode="json", exclude_defaults=True)
    if branch.occupancy_cap is not None:
        closing["occupancy_cap"] = branch.occupancy_cap
    if closing:
        config["closing"] = closing
    if branch.actuators:
        config["actuators"] = [
            a.model_dump(mode="json", by_alias=True, exclude_defaults=True)
            for a in branch.actuators
        ]
    if branch.fire_alarm_device:
        config["safety"] = {"fire_alarm_device": branch.fire_alarm_device}
    return config


#: Rendered files that are not world-readable (mode by path; every other file is 0644).
FILE_MODES: Mapping[str, int] = {"mosquitto/passwd": 0o600}

#: PBKDF2-SHA512 iterations of the password file (Mosquitto's ``$7$`` format carries the
#: count; mosquitto_passwd 2.0 writes 101). Each CONNECT costs the broker one hash.
PBKDF2_ITERATIONS = 100_000
SALT_BYTES = 12  # Mosquitto reads exactly 12


def mosquitto_password_line(
    user: str, password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """``user:$7$<iterations>$salt$hash``: Mosquitto 2's PBKDF2-SHA512 password file entry,
    with a random salt unless one is given."""
    if ":" in _one_field(user, where=f"password file user {user!r}"):
        raise RenderError(f"password file user {user!r}: a ':' ends the user name")
    salt = token_bytes(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise RenderError(f"a Mosquitto salt is {SALT_BYTES} bytes, not {len(salt)}")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    encoded = f"{base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    return f"{user}:$7${iterations}${encoded}"


def _password_line(user: str, secrets: Secrets, salt: Callable[[], bytes]) -> str:
    """The user's line as rendered before while its password is unchanged (so that a render
    with nothing new changes nothing), else a new one with a new salt. What was rendered is
    kept beside the password in the secrets folder, with the password's SHA-256."""
    password = secrets.get(f"mqtt/{user}")
    fingerprint = hashlib.sha256(password.encode()).hexdigest()
    memo = f"mosquitto/{user}"
    kept = secrets.peek(memo)
    if kept is not None and kept.startswith(f"{fingerprint} {user}:$7$"):
        return kept.split(" ", 1)[1]
    line = mosquitto_password_line(user, password, salt=salt())
    secrets.put(memo, f"{fingerprint} {line}")
    return line


def _device_grants(base: str, profile: MqttProfile, *, where: str) -> list[tuple[str, str]]:
    """What the gateway needs of one MQTT device's topics: read every topic its profile's
    points arrive on (the device's own and its sub-topics), write its command topic."""
    grants = [
        ("read", base if sub is None else _literal_topic(f"{base}/{sub}", where=where))
        for sub in profile.topics
    ]
    if profile.set_topic is not None:
        grants.append(("write", _literal_topic(f"{base}/{profile.set_topic}", where=where)))
    return grants


def _acl(inventory: Inventory) -> str:
    lines = [
        "# Rendered by `openbranch provision render`; do not edit.",
        "# Each gateway publishes only its own branch's topics and reads only its own control",
        "# topic and its devices, and publishes (and reads back) its own Home Assistant",
        "# discovery configs; operations may command; dashboards and Home Assistant only read.",
        "",
    ]
    prefix = prefix_of(inventory)
    grants: list[tuple[str, list[tuple[str, str]]]] = []
    for b, branch in enumerate(inventory.branches):
        own = f"{prefix}/{branch.id}"
        topics = [
            ("write", f"{own}/status"),
            ("write", f"{own}/+/state"),
            ("write", f"{own}/+/availability"),
            ("read", f"{own}/control"),
            ("readwrite", _discovery(branch)),
            ("read", f"{DISCOVERY}/status"),
        ]
        for d, device in enumerate(branch.devices):
            if isinstance(device.transport, MqttTransport):
                where = f"branches[{b}].devices[{d}] ({device.id}).transport.topic"
                base = _literal_topic(device.transport.topic, where=where)
                topics += _device_grants(base, MQTT_PROFILES.all()[device.profile], where=where)
        grants.append((user_of(branch), topics))
    grants += [
        (OPERATIONS, [("write", f"{prefix}/+/control"), ("read", f"{prefix}/#")]),
        (DASHBOARDS, [("read", f"{prefix}/#")]),
        (
            HOME_ASSISTANT,
            [
                ("read", f"{prefix}/#"),
                ("read", f"{DISCOVERY}/#"),
                ("write", f"{DISCOVERY}/status"),
            ],
        ),
    ]
    for user, topics in grants:
        lines.append(f"user {_one_field(user, where=f'ACL user {user!r}')}")
        lines += [
            f"topic {access} {_one_field(topic, where=f'ACL topic of {user}', blanks=True)}"
            for access, topic in topics
        ]
        lines.append("")
    return "\n".join(lines)


MAX_QUEUED_MESSAGES = 100_000  # per client, kept while a gateway is away or behind (decision 38)
# QoS 1 messages in flight to one client. A gateway acknowledges a message only once it is
# committed (every 50 ms), so Mosquitto's default of 20 would cap a gateway at a few hundred
# QoS 1 messages a second (decision 41).
MAX_INFLIGHT_MESSAGES = 1000


def _mosquitto_conf(port: int = 8883, bridge_port: int = 8884) -> str:
    return "\n".join(
        [
            "# Rendered by `openbranch provision render`; include from mosquitto.conf.",
            "per_listener_settings false",
            "allow_anonymous false",
            "password_file /etc/mosquitto/openbranch/passwd",
            "acl_file /etc/mosquitto/openbranch/acl",
            "# A subscriber that falls behind (a gateway holding back under a burst of device",
            "# messages, Home Assistant restarting) has its QoS 1 messages kept, not dropped at",
            "# Mosquitto's default of 1,000 per client.",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            "",
            "# Gateways, operators and dashboards: TLS and a password.",
            f"listener {port}",
            "certfile /etc/mosquitto/certs/server.crt",
            "keyfile /etc/mosquitto/certs/server.key",
            "",
            "# Bridges from branches with a local broker: TLS client certificates whose common",
            "# name is the gateway's user (gw-<branch>), so the same ACL applies.",
            f"listener {bridge_port}",
            "certfile /etc/mosquitto/certs/server.crt",
            "keyfile /etc/mosquitto/certs/server.key",
            "cafile /etc/mosquitto/certs/branches-ca.crt",
            "require_certificate true",
            "use_identity_as_username true",
            "",
        ]
    )


# A shard's broker pair (defaults.mqtt_standby): the bridge prefers the first address, moves
# to the second when the first is lost, and keeps trying the first to come back to it;
# reconnects back off from 2 to 20 s, with jitter (Mosquitto 2).
_FAILOVER = ("round_robin false", "restart_timeout 2 20")


def _bridge(inventory: Inventory, branch: Branch, bridge_port: int = 8884) -> str:
    """For a branch's own Mosquitto: forward the gateway's topics, bring its commands in."""
    central = inventory.defaults.mqtt
    host = central.host if central is not None else "mqtt.example"
    standby = inventory.defaults.mqtt_standby
    where = f"bridge of {branch.id}"
    for field, name in (("mqtt.host", host), ("mqtt_standby", standby)):
        if name is None:
            continue
        problem = host_problem(name) or (":" in name and "an IPv6 address: give a host name")
        if problem:
            raise RenderError(f"{where}: defaults.{field}: {problem}")
    if standby == host:
        raise RenderError(f"{where}: defaults.mqtt_standby: the same host as mqtt.host")
    addresses = [_one_field(h, where=where) for h in (host, standby) if h is not None]
    own = f"{prefix_of(inventory)}/{branch.id}"
    user = _one_field(user_of(branch), where=where)
    topics = [
        f"{own}/status out 1",
        f"{own}/+/state out 1",
        f"{own}/+/availability out 1",
        f"{own}/control in 1",
        f"{DISCOVERY}/+/openbranch_{branch.id}/# out 1",
        f"{DISCOVERY}/status in 1",
    ]
    for topic in topics:
        _one_field(topic.split(" ")[0], where=where)
    return "\n".join(
        [
            f"# Rendered for {comment(branch.name)}: install on the branch's local Mosquitto.",
            "# Authenticates with a client certificate (CN = the gateway's user); no password",
            "# is written here.",
            "connection openbranch-central",
            "address " + " ".join(f"{h}:{bridge_port}" for h in addresses),
            *(_FAILOVER if standby is not None else ()),
            f"remote_clientid {_one_field(f'bridge-{branch.id}', where=where)}",
            "bridge_protocol_version mqttv311",
            "bridge_cafile /etc/mosquitto/certs/central-ca.crt",
            f"bridge_certfile /etc/mosquitto/certs/{user}.crt",
            f"bridge_keyfile /etc/mosquitto/certs/{user}.key",
            "cleansession false",
            "notifications false",
            *(f"topic {topic}" for topic in topics),
            "",
        ]
    )


def render(
    inventory: Inventory,
    secrets: Secrets,
    *,
    progress: Callable[[list[Branch]], Iterable[Branch]] = iter,
    salt: Callable[[], bytes] = lambda: token_bytes(SALT_BYTES),
) -> Mapping[str, str]:
    """Every rendered file, by path relative to the output folder (``progress`` wraps the
    loop over branches, e.g. with a progress bar; ``salt`` draws a new password hash's salt).
    """
    files: dict[str, str] = {}
    passwd: list[str] = []
    for branch in progress(list(inventory.branches)):  # a branch's whole work, hash included
        files[f"gateways/{branch.id}.yaml"] = (
            f"# Gateway config for {comment(branch.name)}, rendered from the"
            f" {comment(inventory.municipality.name)} inventory.\n"
            "# Secrets are files on the gateway, never values here.\n"
            + dump_yaml(render_gateway(inventory, branch), where=f"gateways/{branch.id}.yaml")
        )
        passwd.append(_password_line(user_of(branch), secrets, salt))
    passwd += [_password_line(u, secrets, salt) for u in (OPERATIONS, DASHBOARDS, HOME_ASSISTANT)]
    files["mosquitto/passwd"] = "".join(line + "\n" for line in passwd)
    files["mosquitto/acl"] = _acl(inventory)
    files["mosquitto/openbranch.conf"] = _mosquitto_conf()
    for branch in inventory.branches:
        if branch.local_broker:
            files[f"mosquitto/bridges/{branch.id}.conf"] = _bridge(inventory, branch)
    for branch in inventory.branches:  # per-gateway command keys: in the secrets folder only
        secrets.get(f"control/{branch.id}")
    for sink in inventory.defaults.sinks:
        if sink.type == "influxdb_v1":
            statements = setup_for(sink.database).statements()
            files["influxdb/setup.influxql"] = "\n".join([*statements, ""])
    files["systemd/openbranch-gateway.service"] = SYSTEMD_UNIT
    if any(sink.type == "influxdb_v1" for sink in inventory.defaults.sinks):
        files["systemd/openbranch-purge.service"] = PURGE_UNIT
        files["systemd/openbranch-purge.timer"] = PURGE_TIMER
    if any(branch.website_hours is not None for branch in inventory.branches):
        files["systemd/openbranch-hours.service"] = HOURS_UNIT
        files["systemd/openbranch-hours.timer"] = HOURS_TIMER
    files.update(_grafana(inventory))
    return files


GRAFANA_DASHBOARDS = "/var/lib/grafana/dashboards/openbranch"  # where the render is installed


def fleet_of(inventory: Inventory) -> Fleet:
    """What the dashboards need from the inventory: branch names and floor areas."""
    m = inventory.municipality
    return Fleet(
        id=m.id,
        name=m.name,
        timezone=m.timezone,
        price_area=m.price_area,
        branches=tuple(
            BranchInfo(id=b.id, name=b.name, floor_area_m2=b.floor_area_m2)
            for b in inventory.branches
        ),
    )


def _grafana(inventory: Inventory) -> dict[str, str]:
    """Grafana provisioning: the InfluxDB data source, a dashboard folder per municipality with
    every dashboard, and the alert rules (in the same folder)."""
    m = inventory.municipality
    sink = next((s for s in inventory.defaults.sinks if s.type == "influxdb_v1"), None)
    if sink is None:
        return {}
    datasource = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "OpenBranch InfluxDB",
                "uid": DATASOURCE["uid"],
                "type": "influxdb",
                "access": "proxy",
                "url": sink.url,
                "user": DASHBOARDS,
                "jsonData": {"dbName": sink.database, "httpMode": "GET"},
                "secureJsonData": {"password": "$__file{/etc/grafana/secrets/openbranch-influxdb}"},
            }
        ],
    }
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": f"openbranch-{m.id}",
                "folder": m.name,
                "type": "file",
                "disableDeletion": True,
                "options": {"path": f"{GRAFANA_DASHBOARDS}/{m.id}"},
            }
        ],
    }

    def dump(data: object) -> str:
        return dump_yaml(data, where="grafana provisioning")

    files = {
        "grafana/provisioning/datasources/openbranch.yaml": dump(datasource),
        "grafana/provisioning/dashboards/openbranch.yaml": dump(provider),
    }
    for name, text in build_dashboards(fleet_of(inventory)).items():
        if name == ALERT_RULES_FILE:
            files["grafana/provisioning/alerting/openbranch.yaml"] = text
        else:
            files[f"grafana/dashboards/{m.id}/{name}"] = text
    return files


GATEWAY_STATE = "/var/lib/openbranch"  # the gateway's StateDirectory (SYSTEMD_UNIT)

# The periodic import of a branch's hours from its website (decision 76): only what
# `hours apply --auto` may apply (closures and shortening) is applied unattended.
HOURS_UNIT = """\
# Rendered by `openbranch provision render` for gateways with website_hours. Install as
# /etc/systemd/system/openbranch-hours.service with openbranch-hours.timer beside it.
[Unit]
Description=OpenBranch: opening hours from the library's website
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
User=openbranch
Group=openbranch
# import reads the website (and changes nothing); apply --auto applies closures and shortening;
# the running gateway takes hours_imported.yaml within a minute and audits each change.
ExecStart=/opt/openbranch/.venv/bin/openbranch hours import /etc/openbranch/gateway.yaml
ExecStart=/opt/openbranch/.venv/bin/openbranch hours apply --auto /etc/openbranch/gateway.yaml
StateDirectory=openbranch
NoNewPrivileges=true
ProtectSystem=strict
ReadWritePaths=/var/lib/openbranch
ProtectHome=true
PrivateTmp=true
"""

# The central InfluxDB's copy of the entry records (card pseudonyms) kept no longer than the
# inventory's entry_retention_days (decision 71); the gateways purge their own stores.
PURGE_UNIT = """\
# Rendered by `openbranch provision render`. Install on the central host as
# /etc/systemd/system/openbranch-purge.service with openbranch-purge.timer beside it and the
# inventory at /etc/openbranch/inventory.yaml.
[Unit]
Description=OpenBranch: delete entry records past their retention from InfluxDB
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
User=openbranch
Group=openbranch
ExecStart=/opt/openbranch/.venv/bin/openbranch provision purge-entries \\
    /etc/openbranch/inventory.yaml
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
"""

PURGE_TIMER = """\
# Rendered by `openbranch provision render`: once a day.
[Unit]
Description=OpenBranch: entry records past their retention deleted, daily

[Timer]
OnCalendar=*-*-* 03:30:00
RandomizedDelaySec=15min
Persistent=true

[Install]
WantedBy=timers.target
"""

HOURS_TIMER = """\
# Rendered by `openbranch provision render`: every 6 hours, a fleet spread over half an hour.
[Unit]
Description=OpenBranch: opening hours from the library's website, every 6 hours

[Timer]
OnCalendar=*-*-* 00/6:15:00
RandomizedDelaySec=30min
Persistent=true

[Install]
WantedBy=timers.target
"""

SYSTEMD_UNIT = """\
# Rendered by `openbranch provision render`. Install as
# /etc/systemd/system/openbranch-gateway.service with the branch's config at
# /etc/openbranch/gateway.yaml and its secrets beside it (readable by user openbranch only).
[Unit]
Description=OpenBranch gateway
Wants=network-online.target
After=network-online.target

[Service]
# The gateway says READY=1 once its parts run, and WATCHDOG=1 from its event loop every
# WatchdogSec/2 (edge/runtime/watchdog.py): a hung loop, not only a dead process, is killed
# (SIGABRT) and restarted.
Type=notify
NotifyAccess=main
WatchdogSec=60s
User=openbranch
Group=openbranch
ExecStart=/opt/openbranch/.venv/bin/openbranch gateway run /etc/openbranch/gateway.yaml
# Unattended: restarted after a crash, a watchdog kill or any exit, every 5 s, for ever
Restart=always
RestartSec=5
# SIGTERM: polls stop, queued readings are committed, in-flight writes finish
KillSignal=SIGTERM
TimeoutStopSec=30
StateDirectory=openbranch
NoNewPrivileges=true
ProtectSystem=strict
ReadWritePaths=/var/lib/openbranch
ProtectHome=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target
"""
