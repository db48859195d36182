"""A shard's pair of central brokers (``defaults.mqtt_standby``, docs/SCALE.md): the bridge a
branch's local Mosquitto gets names both, prefers the first, and fails over to the second. Three
real Mosquittos: the pair runs the rendered central config (TLS bridge listener with client
certificates, the rendered accounts and ACL), the branch's runs the rendered bridge; then the
first of the pair is stopped and the branch's messages reach the second."""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openbranch.edge.core.registry import default_registry, load_checked
from openbranch.provisioning.inventory import Inventory, load_inventory
from openbranch.provisioning.render import RenderError, render
from openbranch.provisioning.secrets import Secrets
from tests.conftest import start_or_fail
from tests.provisioning.mqttprobe import Session
from tests.provisioning.test_mosquitto_tls import RenderedBroker, make_certs
from tests.services import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[2]
AARHUS = ROOT / "examples" / "inventories" / "aarhus.yaml"
CENTRAL = "mqtt: {host: mqtt.aarhus.example, port: 8883, tls: true}"


def paired(tmp_path: Path, standby: str = "mqtt2.aarhus.example") -> Inventory:
    text = AARHUS.read_text(encoding="utf-8")
    assert CENTRAL in text
    path = tmp_path / "aarhus.yaml"
    path.write_text(text.replace(CENTRAL, f"{CENTRAL}\n  mqtt_standby: {standby}"), "utf-8")
    return load_inventory(path, check_device=default_registry().check_device)


def test_the_bridge_names_both_brokers_and_prefers_the_first(tmp_path: Path) -> None:
    files = render(paired(tmp_path), Secrets(tmp_path / "secrets"))
    bridge = files["mosquitto/bridges/viby.conf"].splitlines()
    assert "address mqtt.aarhus.example:8884 mqtt2.aarhus.example:8884" in bridge
    assert "round_robin false" in bridge  # the first is the main connection, come back to it
    assert "restart_timeout 2 20" in bridge
    with pytest.raises(RenderError, match=r"bridge of viby: defaults\.mqtt_standby: the same"):
        render(paired(tmp_path, "mqtt.aarhus.example"), Secrets(tmp_path / "secrets"))


def test_a_shard_paces_every_gateway_from_the_inventory(tmp_path: Path) -> None:
    """The fleet's drain rate (docs/SCALE.md) is set once, in the sinks' defaults."""
    text = AARHUS.read_text(encoding="utf-8")
    sink = "database: libraries}"
    assert sink in text
    path = tmp_path / "aarhus.yaml"
    path.write_text(text.replace(sink, "database: libraries, max_rate: 500}"), "utf-8")
    inventory = load_inventory(path, check_device=default_registry().check_device)
    files = render(inventory, Secrets(tmp_path / "secrets"))
    out = tmp_path / "out"
    for name in ("gateways/dokk1.yaml", "gateways/viby.yaml"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(files[name], encoding="utf-8")
        assert [s.max_rate for s in load_checked(out / name).sinks] == [500]


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates")
    where = tmp_path / "certs"
    where.mkdir()
    make_certs(where)  # a CA; a server certificate for 127.0.0.1; a client one, CN=gw-viby
    return where


def _same(broker: RenderedBroker) -> RenderedBroker:
    return broker


@pytest.fixture
def central_pair(
    tmp_path: Path, certs: Path
) -> Iterator[tuple[list[RenderedBroker], dict[str, Any]]]:
    """The shard's two brokers on the rendered central config; the probe listens on a plain
    listener added for the test (same accounts and ACL: per_listener_settings is false)."""
    inventory = paired(tmp_path)
    secrets = Secrets(tmp_path / "secrets")
    files = dict(render(inventory, secrets))
    out = tmp_path / "render"
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
    brokers: list[RenderedBroker] = []
    bridge_ports = []
    try:
        for _ in range(2):
            plain, tls, bridge = free_port(), free_port(), free_port()
            conf = (
                files["mosquitto/openbranch.conf"]
                .replace("/etc/mosquitto/openbranch/", f"{out}/mosquitto/")
                .replace("/etc/mosquitto/certs/server.", f"{certs}/server.")
                .replace("/etc/mosquitto/certs/branches-ca.crt", f"{certs}/ca.crt")
                .replace("listener 8883", f"listener {tls} 127.0.0.1")
                .replace("listener 8884", f"listener {bridge} 127.0.0.1")
            ) + f"\nlistener {plain} 127.0.0.1\n"
            broker = RenderedBroker(conf)
            broker.port = plain
            brokers.append(start_or_fail(functools.partial(_same, broker)))
            bridge_ports.append(bridge)
        yield (
            brokers,
            {
                "bridge": files["mosquitto/bridges/viby.conf"],
                "ports": bridge_ports,
                "password": secrets.get("mqtt/dashboards"),
            },
        )
    finally:
        for broker in brokers:
            broker.close()


def test_a_branch_fails_over_to_the_second_broker_when_the_first_stops(
    certs: Path, central_pair: tuple[list[RenderedBroker], dict[str, Any]]
) -> None:
    (first, second), rendered = central_pair
    a, b = rendered["ports"]
    bridge = (
        rendered["bridge"]
        .replace("mqtt.aarhus.example:8884", f"127.0.0.1:{a}")
        .replace("mqtt2.aarhus.example:8884", f"127.0.0.1:{b}")
        .replace("/etc/mosquitto/certs/central-ca.crt", f"{certs}/ca.crt")
        .replace("/etc/mosquitto/certs/gw-viby.", f"{certs}/gw-viby.")
    )
    branch = start_or_fail(lambda: Mosquitto(bridge))
    watchers = [Session(broker, "dashboards", rendered["password"]) for broker in (first, second)]
    publisher = Session(branch, None, None)  # the gateway's side: the branch's own broker
    try:
        for watcher in watchers:
            assert watcher.subscribe("openbranch/viby/#") == 1  # granted, QoS 1

        def arrives(watcher: Session, marker: str, within: float = 40.0) -> float:
            """Publish at the branch until ``marker`` arrives at ``watcher``; seconds taken."""
            topic = f"openbranch/viby/{marker}/state"
            arrived = watcher.expect(topic)
            started = time.monotonic()
            while not arrived.wait(0.5):
                assert time.monotonic() - started < within, (
                    f"{marker} did not arrive within {within:g} s: {branch.log_tail()}"
                )
                assert publisher.publish(topic, marker.encode()) == 0
            return time.monotonic() - started

        arrives(watchers[0], "before")  # the bridge took the first broker
        assert not watchers[1].received("openbranch/viby/before/state")
        first.stop()
        failover = arrives(watchers[1], "after")  # the second took over
        assert failover < 40
    finally:
        publisher.close()
        for watcher in watchers:
            watcher.close()
        branch.close()
