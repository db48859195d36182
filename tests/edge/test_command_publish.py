"""`openbranch command ... --publish`: a person's command goes with an operator's account, and
the CLI says "published" only when the broker acknowledged it (issue 13). Against a real
Mosquitto with accounts and an ACL as provisioning renders them: the gateway's account may
read its control topic, the operator's may write it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from openbranch.provisioning.render import mosquitto_password_line
from tests.services import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = {"gw-pub": "gw-secret", "operations": "ops-secret", "watcher": "watch-secret"}
ACL = """user gw-pub
topic read openbranch/pub/control
user operations
topic write openbranch/+/control
user watcher
topic read #
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    passwd.write_text(
        "".join(mosquitto_password_line(u, p, iterations=1000) + "\n" for u, p in ACCOUNTS.items()),
        encoding="utf-8",
    )
    acl.write_text(ACL, encoding="utf-8")
    server = Mosquitto(f"password_file {passwd}\nacl_file {acl}\n", anonymous=False)
    server.start()
    try:
        yield server
    finally:
        server.close()


def command(tmp_path: Path, broker: Mosquitto, *extra: str, password: str) -> tuple[int, str]:
    (tmp_path / "key").write_text("k3y-for-publish-tests", encoding="utf-8")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "branch": {"id": "pub", "name": "Publish test"},
                "store": {"path": str(tmp_path / "outbox.db")},
                "mqtt": {
                    "host": broker.host,
                    "port": broker.port,
                    "username": "gw-pub",
                    "password": {"env": "OB_TEST_GW_PASSWORD"},
                },
                "control": {"key": {"file": str(tmp_path / "key")}},
            }
        ),
        encoding="utf-8",
    )
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    env = {
        **os.environ,
        "OB_TEST_GW_PASSWORD": ACCOUNTS["gw-pub"],
        "OPENBRANCH_MQTT_PASSWORD": password,
    }
    out = subprocess.run(
        [
            *(sys.executable, "-m", "openbranch.edge.cli", "command", "override", str(config)),
            *("--mode", "closed", "--until", until, "--who", "ops:test", "--publish", *extra),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    return out.returncode, out.stderr


def test_without_an_operator_account_nothing_is_published(
    tmp_path: Path, broker: Mosquitto
) -> None:
    code, err = command(tmp_path, broker, password="")
    assert code == 1
    assert "not published: a command goes with an operator's account: --mqtt-user" in err


def test_the_gateways_own_account_is_refused_by_the_broker_and_the_cli_says_so(
    tmp_path: Path, broker: Mosquitto
) -> None:
    code, err = command(tmp_path, broker, "--mqtt-user", "gw-pub", password=ACCOUNTS["gw-pub"])
    assert code == 1
    assert "refused the message on openbranch/pub/control: Not authorized" in err


def test_a_wrong_operator_password_is_refused_at_login(tmp_path: Path, broker: Mosquitto) -> None:
    code, err = command(tmp_path, broker, "--mqtt-user", "operations", password="wrong")
    assert code == 1
    assert "refused the login as operations: Not authorized" in err


def test_the_operator_publishes_and_the_broker_acknowledges(
    tmp_path: Path, broker: Mosquitto
) -> None:
    got: list[bytes] = []
    subscribed, arrived = threading.Event(), threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
    client.username_pw_set("watcher", ACCOUNTS["watcher"])
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: (got.append(m.payload), arrived.set())
    client.connect(broker.host, broker.port)
    client.subscribe("openbranch/pub/control", qos=1)
    client.loop_start()
    try:
        assert subscribed.wait(5)
        code, err = command(
            tmp_path, broker, "--mqtt-user", "operations", password=ACCOUNTS["operations"]
        )
        assert (code, err.strip()) == (
            0,
            "published to openbranch/pub/control, acknowledged by the broker",
        )
        assert arrived.wait(5)
        assert b'"action": "override"' in got[0]
    finally:
        client.disconnect()
        client.loop_stop()
