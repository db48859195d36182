"""The whole rendered Mosquitto configuration — TLS listener for passwords, TLS listener for
bridges with client certificates — loads into a real Mosquitto, with test certificates made by
openssl, and each listener admits the right identity."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from openbranch.edge.core.registry import default_registry
from openbranch.provisioning.inventory import load_inventory
from openbranch.provisioning.render import render
from openbranch.provisioning.secrets import Secrets
from tests.conftest import start_or_fail
from tests.services import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[2]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1, and a bridge client certificate CN=gw-viby."""
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        cwd=d,
    )
    for name, cn in (("server", "127.0.0.1"), ("gw-viby", "gw-viby")):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
            cwd=d,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            cwd=d,
        )


class RenderedBroker(Mosquitto):
    """Mosquitto run with the rendered config alone (paths and ports moved to the test's)."""

    def __init__(self, conf: str) -> None:
        super().__init__()
        self.conf = conf

    def command(self) -> list[str]:
        path = self.dir / "rendered.conf"
        user = "user root\n" if os.geteuid() == 0 else ""
        path.write_text(self.conf + user, encoding="utf-8")
        return [self.binary, "-c", str(path)]

    def ready(self) -> bool:
        return (self.dir / "rendered.conf").exists() and self._listening()

    def _listening(self) -> bool:
        import socket

        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False


def connect(
    port: int,
    certs: Path,
    *,
    user: str | None = None,
    password: str | None = None,
    client_cert: str | None = None,
) -> bool:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.tls_set(
        ca_certs=str(certs / "ca.crt"),
        certfile=str(certs / f"{client_cert}.crt") if client_cert else None,
        keyfile=str(certs / f"{client_cert}.key") if client_cert else None,
        cert_reqs=ssl.CERT_REQUIRED,
    )
    client.tls_insecure_set(True)  # the chain is verified; the test certificate has no SAN
    if user is not None:
        client.username_pw_set(user, password)
    result: list[Any] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: result.append(rc)
    try:
        client.connect("127.0.0.1", port)
        client.loop_start()
        deadline = time.monotonic() + 3
        while not result and time.monotonic() < deadline:
            time.sleep(0.02)
    except (OSError, ssl.SSLError):
        return False
    finally:
        client.loop_stop()
        client.disconnect()
        sock = client.socket()
        if sock is not None:
            sock.close()
    return bool(result) and not result[0].is_failure


def test_the_whole_rendered_config_loads_and_admits_the_right_identities(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates")
    inventory = load_inventory(
        ROOT / "examples/inventories/aarhus.yaml", check_device=default_registry().check_device
    )
    secrets = Secrets(tmp_path / "secrets")
    files = render(inventory, secrets)
    out = tmp_path / "render"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certs(certs)
    main_port, bridge_port = free_port(), free_port()
    conf = (
        files["mosquitto/openbranch.conf"]
        .replace("/etc/mosquitto/openbranch/", f"{out}/mosquitto/")
        .replace("/etc/mosquitto/certs/server.", f"{certs}/server.")
        .replace("/etc/mosquitto/certs/branches-ca.crt", f"{certs}/ca.crt")
        .replace("listener 8883", f"listener {main_port} 127.0.0.1")
        .replace("listener 8884", f"listener {bridge_port} 127.0.0.1")
    )
    broker = RenderedBroker(conf)
    broker.port = main_port
    broker = start_or_fail(lambda: broker)
    try:
        password = secrets.get("mqtt/gw-hasle")
        assert connect(main_port, certs, user="gw-hasle", password=password)
        assert not connect(main_port, certs, user="gw-hasle", password="wrong")
        assert not connect(main_port, certs)  # anonymous
        assert connect(bridge_port, certs, client_cert="gw-viby")  # the bridge's certificate
        assert not connect(bridge_port, certs)  # no certificate, no bridge
    finally:
        broker.close()
