"""The inventory renders gateway configs that pass `gateway check`, and a broker config whose
ACL holds against real MQTT clients on a real Mosquitto."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from openbranch.edge.core.registry import default_registry, load_checked
from openbranch.edge.core.yamlsource import ConfigError
from openbranch.integrations.homeassistant.discovery import node_id
from openbranch.provisioning.inventory import load_inventory
from openbranch.provisioning.render import mosquitto_password_line, render
from openbranch.provisioning.secrets import Secrets
from tests.provisioning.mqttprobe import NOT_AUTHORIZED, Session, connack, reads
from tests.services import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
AARHUS = ROOT / "examples" / "inventories" / "aarhus.yaml"


def rendered(tmp_path: Path) -> tuple[dict[str, str], Secrets]:
    inventory = load_inventory(AARHUS, check_device=default_registry().check_device)
    secrets = Secrets(tmp_path / "secrets")
    files = dict(render(inventory, secrets))
    out = tmp_path / "out"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
    return files, secrets


def test_every_rendered_gateway_config_passes_gateway_check(tmp_path: Path) -> None:
    files, _secrets = rendered(tmp_path)
    gateways = sorted(n for n in files if n.startswith("gateways/"))
    assert gateways == ["gateways/dokk1.yaml", "gateways/hasle.yaml", "gateways/viby.yaml"]
    for name in gateways:
        config = load_checked(tmp_path / "out" / name)
        assert config.mqtt is not None
        assert config.mqtt.password is not None
        assert config.mqtt.password.file is not None  # a reference, never the value
    assert "systemd/openbranch-gateway.service" in files
    assert 'CREATE RETENTION POLICY "raw" ON "libraries"' in files["influxdb/setup.influxql"]
    for branch in ("dokk1", "hasle", "viby"):  # a command key per gateway, operator-only
        assert (tmp_path / "secrets" / "control" / branch).exists()
    hasle = load_checked(tmp_path / "out" / "gateways/hasle.yaml")
    assert hasle.closing.occupancy_cap == 120
    assert hasle.hours is not None  # the fleet default
    everything = "".join(files.values())
    for path in (tmp_path / "secrets").rglob("*"):
        if path.is_file():
            assert path.read_text().strip() not in everything  # no secret in any render
            assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_inventory_errors_name_file_line_and_field(tmp_path: Path) -> None:
    text = AARHUS.read_text(encoding="utf-8")
    cases = [
        (
            text.replace("  - id: viby\n", "  - id: hasle\n"),
            "branches[2].id: 'hasle' is already branches[1]",
        ),
        (
            text.replace("profile: vaisala-gmw90", "profile: vaisala-gmw99"),
            "branches[0].devices[2].profile: unknown profile",
        ),
        (
            text.replace("host: 10.20.2.10, unit_id: 2}", "host: 10.20.2.10, unit_id: 1}"),
            "branches[1].devices[1].transport.unit_id: unit id 1 on tcp://10.20.2.10:502 is already used",
        ),
        (
            text.replace('{start: "14:00", end: "20:00"', '{start: "13:00", end: "20:00"'),
            "defaults.hours.weekly.sat[2]: 13:00-20:00 overlaps 10:00-14:00",
        ),
        (text.replace("price_area: DK1", "price_area: DK3"), "municipality.price_area:"),
    ]
    for bad, expected in cases:
        path = tmp_path / "aarhus.yaml"
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            load_inventory(path, check_device=default_registry().check_device)
        message = str(info.value)
        assert expected in message, message
        assert message.startswith(f"{path}:")
        line = int(message.split(":")[1])
        assert line > 1


PROBE = ("probe", "probe")  # a test-only account that may publish anywhere


def _puback(broker: Mosquitto, account: tuple[str, str], topic: str) -> int:
    session = Session(broker, *account)
    try:
        assert session.connack == 0, f"{account[0]} was refused: {session.connack:#x}"
        return session.publish(topic)
    finally:
        session.close()


def test_rendered_acl_holds_on_a_real_mosquitto(tmp_path: Path) -> None:
    """Every refusal is the broker's own answer (PUBACK or CONNACK 0x87 for MQTT v5), and every
    "cannot read" is read after a marker that was published later has arrived (the probe
    account, added for the test, publishes what the readers are tested with)."""
    files, secrets = rendered(tmp_path)
    out = tmp_path / "out" / "mosquitto"
    # the rendered conf's global limits too (its listeners need certificates not made here)
    limits = [
        line
        for line in files["mosquitto/openbranch.conf"].splitlines()
        if line.startswith(("max_queued_messages ", "max_inflight_messages "))
    ]
    assert limits == ["max_queued_messages 100000", "max_inflight_messages 1000"]
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    passwd.write_text(
        files["mosquitto/passwd"] + mosquitto_password_line(*PROBE) + "\n", encoding="utf-8"
    )
    acl.write_text(files["mosquitto/acl"] + "\nuser probe\ntopic readwrite #\n", encoding="utf-8")
    assert (out / "acl").read_text(encoding="utf-8") == files["mosquitto/acl"]
    settings = "\n".join(limits)
    broker = Mosquitto(f"password_file {passwd}\nacl_file {acl}\n{settings}\n", anonymous=False)
    broker.start()

    def account(user: str) -> tuple[str, str]:
        return (user, secrets.get(f"mqtt/{user}"))

    hasle, viby = account("gw-hasle"), account("gw-viby")
    ops, dash, ha = account("operations"), account("dashboards"), account("homeassistant")
    own_control = "openbranch/hasle/control"  # a marker gw-hasle may read
    try:
        assert reads(broker, hasle, own_control, writer=PROBE, marker="homeassistant/status")
        assert not reads(broker, hasle, "openbranch/viby/control", writer=PROBE, marker=own_control)
        assert not reads(  # not everything
            broker,
            hasle,
            "#",
            publish_to="openbranch/viby/x/state",
            writer=PROBE,
            marker=own_control,
        )
        assert _puback(broker, hasle, "openbranch/hasle/main-meter/state") < 0x80  # its own
        assert _puback(broker, hasle, "openbranch/viby/main-meter/state") == NOT_AUTHORIZED
        assert _puback(broker, hasle, own_control) == NOT_AUTHORIZED  # cannot command itself
        assert _puback(broker, ops, "openbranch/viby/control") < 0x80  # operations may command
        assert _puback(broker, dash, "openbranch/viby/control") == NOT_AUTHORIZED  # read only
        assert reads(broker, dash, "openbranch/#", publish_to="openbranch/viby/status",
                     writer=PROBE, marker="openbranch/hasle/status")  # fmt: skip
        assert connack(broker, None, None) == NOT_AUTHORIZED  # anonymous refused
        assert connack(broker, "gw-hasle", "wrong") == NOT_AUTHORIZED
        assert _puback(broker, viby, "openbranch/viby/status") < 0x80
        # Home Assistant discovery: each gateway its own configs (and reads them back to
        # remove stale ones), Home Assistant reads everything and announces its status
        mine = f"homeassistant/sensor/{node_id('hasle')}/main-meter_total/config"
        theirs = f"homeassistant/sensor/{node_id('viby')}/main-meter_total/config"
        assert _puback(broker, hasle, mine) < 0x80
        assert reads(broker, hasle, mine, writer=PROBE, marker=own_control)  # reads its own back
        assert _puback(broker, hasle, theirs) == NOT_AUTHORIZED
        assert not reads(broker, hasle, theirs, writer=PROBE, marker=own_control)
        assert reads(broker, hasle, "homeassistant/status", writer=PROBE, marker=own_control)
        assert _puback(broker, hasle, "homeassistant/status") == NOT_AUTHORIZED
        every_viby_config = f"homeassistant/+/{node_id('viby')}/+/config"
        assert reads(broker, ha, every_viby_config, publish_to=theirs, writer=PROBE,
                     marker="homeassistant/status")  # fmt: skip
        assert reads(broker, ha, "openbranch/+/control", publish_to="openbranch/viby/control",
                     writer=PROBE, marker="homeassistant/status")  # fmt: skip
        assert _puback(broker, ha, "homeassistant/status") < 0x80
        assert _puback(broker, ha, own_control) == NOT_AUTHORIZED  # read-only
        assert _puback(broker, ha, mine) == NOT_AUTHORIZED
    finally:
        broker.close()


def test_every_example_inventory_renders_gateway_configs_that_pass_gateway_check(
    tmp_path: Path,
) -> None:
    examples = sorted((ROOT / "examples" / "inventories").glob("*.yaml"))
    assert [p.stem for p in examples] == ["aarhus", "copenhagen"]
    for path in examples:
        example = path.stem
        inventory = load_inventory(path, check_device=default_registry().check_device)
        files = render(inventory, Secrets(tmp_path / example / "secrets"))
        for name, text in files.items():
            target = tmp_path / example / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        for branch in inventory.branches:
            config = load_checked(tmp_path / example / "gateways" / f"{branch.id}.yaml")
            assert config.branch.name == branch.name
            assert config.branch.timezone == (branch.timezone or inventory.municipality.timezone)
        assert len([n for n in files if n.startswith("gateways/")]) == len(inventory.branches)


def test_grafana_provisioning_points_at_dashboards_in_the_render(tmp_path: Path) -> None:
    import json

    import yaml

    files, _secrets = rendered(tmp_path)
    sources = yaml.safe_load(files["grafana/provisioning/datasources/openbranch.yaml"])
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert {"name", "uid", "type", "url", "jsonData"} <= set(source)
    assert source["type"] == "influxdb"
    assert source["jsonData"]["dbName"] == "libraries"
    assert "password" not in source  # only as a file reference in secureJsonData
    providers = yaml.safe_load(files["grafana/provisioning/dashboards/openbranch.yaml"])
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "Aarhus Kommune"
    folder = provider["options"]["path"].rsplit("/", 1)[1]
    dashboards = sorted(n for n in files if n.startswith(f"grafana/dashboards/{folder}/"))
    assert [n.rsplit("/", 1)[1] for n in dashboards] == [
        "branch.json",
        "energy.json",
        "extended-hours.json",
        "fleet.json",
    ]
    for name in dashboards:
        board = json.loads(files[name])
        assert all(p["datasource"]["uid"] == source["uid"] for p in board["panels"])
        assert all(
            t["datasource"]["uid"] == source["uid"] for p in board["panels"] for t in p["targets"]
        )
    energy = json.loads(files[f"grafana/dashboards/{folder}/energy.json"])
    per_m2 = next(p for p in energy["panels"] if p["title"] == "kWh per m²")
    assert len(per_m2["targets"]) == 3  # one per branch, divided by its floor area
    alerting = yaml.safe_load(files["grafana/provisioning/alerting/openbranch.yaml"])
    assert alerting["apiVersion"] == 1
    (group,) = alerting["groups"]
    assert group["folder"] == provider["folder"]  # the rules sit beside the dashboards
    for rule in group["rules"]:
        assert rule["data"][0]["datasourceUid"] == source["uid"]


def test_bridge_for_a_branch_with_a_local_broker_carries_no_secret(tmp_path: Path) -> None:
    files, _secrets = rendered(tmp_path)
    assert [n for n in files if n.startswith("mosquitto/bridges/")] == [
        "mosquitto/bridges/viby.conf"
    ]
    bridge = files["mosquitto/bridges/viby.conf"].splitlines()
    assert "address mqtt.aarhus.example:8884" in bridge
    assert "topic openbranch/viby/control in 1" in bridge
    assert "topic openbranch/viby/+/state out 1" in bridge
    assert not any(line.startswith("remote_password") for line in bridge)
    assert "use_identity_as_username true" in files["mosquitto/openbranch.conf"]


def test_inventory_json_schema_for_editors() -> None:
    import json

    from openbranch.provisioning.inventory import inventory_json_schema

    schema = json.loads(inventory_json_schema())
    assert schema["title"] == "OpenBranch fleet inventory"
    assert set(schema["required"]) == {"municipality", "branches"}
    assert "floor_area_m2" in json.dumps(schema)


def _unit_settings(text: str) -> dict[str, dict[str, str]]:
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    return {section: dict(parser[section]) for section in parser.sections()}


def test_the_systemd_unit_is_a_notify_service_with_a_watchdog(tmp_path: Path) -> None:
    files, _secrets = rendered(tmp_path)
    service = _unit_settings(files["systemd/openbranch-gateway.service"])["Service"]
    assert service["Type"] == "notify"  # started once the gateway says READY=1
    assert service["NotifyAccess"] == "main"  # only the gateway process itself may say so
    assert service["WatchdogSec"] == "60s"  # WATCHDOG=1 from its loop, every 30 s
    assert (service["Restart"], service["RestartSec"]) == ("always", "5")
    assert service["KillSignal"] == "SIGTERM"


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own checker, on the rendered unit (installed where the unit says, except the
    gateway's executable, which is this checkout's). It warns without failing on unknown keys
    and bad values, so its output must be empty too."""
    import shutil
    import subprocess
    import sys

    from openbranch.provisioning.render import SYSTEMD_UNIT

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is needed (Debian package systemd)")
    here = Path(sys.executable).parent / "openbranch"
    assert here.exists(), "the openbranch console script of this venv"
    unit = tmp_path / "openbranch-gateway.service"
    text = SYSTEMD_UNIT.replace("/opt/openbranch/.venv/bin/openbranch", str(here))

    def verify(content: str) -> subprocess.CompletedProcess[str]:
        unit.write_text(content, encoding="utf-8")
        return subprocess.run(
            [analyze, "verify", "--man=no", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    result = verify(text)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    broken = verify(text.replace("WatchdogSec=60s", "WatchdogSec=a minute"))  # it does check
    assert "Failed to parse sec value, ignoring: a minute" in broken.stderr


def test_the_acl_grants_a_devices_sub_topics_and_its_command_topic(tmp_path: Path) -> None:
    """A counter whose points arrive on sub-topics (Axis) and a lock that takes commands on
    ``<topic>/set`` (Danalock): the gateway may read each sub-topic and write the set topic,
    and nothing wider."""
    help_button = (
        "      - {id: help-button, profile: aqara-help-button, "
        "transport: {type: mqtt, topic: aarhus/hasle/zigbee2mqtt/help-button}}\n"
    )
    text = AARHUS.read_text(encoding="utf-8")
    assert help_button in text
    extra = (
        "      - {id: counter, profile: axis-object-analytics-crossline, "
        "transport: {type: mqtt, topic: aarhus/hasle/axis/entrance}}\n"
        "      - {id: lock, profile: danalock-v3-zigbee, "
        "transport: {type: mqtt, topic: aarhus/hasle/zigbee2mqtt/lock}}\n"
    )
    path = tmp_path / "aarhus.yaml"
    path.write_text(text.replace(help_button, help_button + extra), encoding="utf-8")
    inventory = load_inventory(path, check_device=default_registry().check_device)
    acl = dict(render(inventory, Secrets(tmp_path / "secrets")))["mosquitto/acl"]
    hasle = acl.split("user gw-hasle\n")[1].split("\n\n")[0].splitlines()
    assert "topic read aarhus/hasle/axis/entrance/Device1Scenario1" in hasle
    assert "topic read aarhus/hasle/axis/entrance/Device1Scenario2" in hasle
    assert "topic read aarhus/hasle/axis/entrance" not in hasle  # no point arrives there
    assert "topic read aarhus/hasle/zigbee2mqtt/lock" in hasle
    assert "topic write aarhus/hasle/zigbee2mqtt/lock/set" in hasle
    assert [line for line in hasle if "#" in line] == []


def test_a_tls_gateway_trusts_the_fleets_ca(tmp_path: Path) -> None:
    """The central broker's certificate is signed by the fleet's CA, not a public one."""
    rendered(tmp_path)
    hasle = load_checked(tmp_path / "out" / "gateways/hasle.yaml")
    assert hasle.mqtt is not None and hasle.mqtt.tls
    assert str(hasle.mqtt.tls_ca) == "/etc/openbranch/central-ca.crt"
