"""The real servers the suite relies on are private, answer, and keep data across a restart;
a server that cannot run skips the test here and fails it in CI."""

from __future__ import annotations

import gc
import shutil
import socket
import sys
import threading
import urllib.request
import uuid
import warnings
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.conftest import start_or_fail
from tests.services import (
    Influxd,
    Mosquitto,
    Service,
    ServiceUnavailable,
    VictoriaMetrics,
    free_port,
)

SYSTEM_BROKER_PORT = 1883


def roundtrip(broker: Mosquitto, topic: str, payload: bytes) -> bytes:
    """Publish ``payload`` with one paho client and return what a second one received."""
    got: list[bytes] = []
    subscribed, done = threading.Event(), threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:6]}")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(message.payload)
        done.set()

    sub.on_message = on_message
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        sub.subscribe(topic, qos=1)
        assert subscribed.wait(5), "the broker did not acknowledge the subscription"
        pub.publish(topic, payload, qos=1).wait_for_publish(5)
        assert done.wait(5), "no message came back through the broker"
    finally:
        for client in (pub, sub):
            client.disconnect()  # before loop_stop, which then returns at once
            client.loop_stop()
    return got[0]


def post(url: str, body: bytes) -> int:
    """POST ``body`` and return the HTTP status."""
    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_free_port_is_free_on_loopback() -> None:
    port = free_port()
    assert 1024 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.services
def test_private_mosquitto_roundtrip_and_restart_on_the_same_port(mosquitto: Mosquitto) -> None:
    assert (mosquitto.host, mosquitto.running) == ("127.0.0.1", True)
    assert mosquitto.port != SYSTEM_BROKER_PORT
    assert roundtrip(mosquitto, "t/x", b"hello") == b"hello"
    port = mosquitto.port
    mosquitto.stop()
    assert not mosquitto.running
    mosquitto.start()
    assert mosquitto.port == port
    assert roundtrip(mosquitto, "t/y", b"again") == b"again"


@pytest.mark.services
def test_mosquitto_loads_extra_config_and_works_as_a_context_manager(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"  # an empty password file: nobody may log in
    passwd.write_text("", encoding="utf-8")
    broker = start_or_fail(lambda: Mosquitto(f"password_file {passwd}\n", anonymous=False))
    with broker:
        assert broker.running
        reasons: list[ReasonCode] = []
        answered = threading.Event()

        def on_connect(_c: object, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
            reasons.append(reason)
            answered.set()

        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.username_pw_set("nobody", "wrong")
        client.on_connect = on_connect
        client.connect(broker.host, broker.port)
        for _ in range(50):  # no network thread: read the CONNACK here, 5 s at most
            client.loop(timeout=0.1)
            if answered.is_set():
                break
        client.disconnect()
        assert answered.is_set(), "no CONNACK"
        assert reasons[0].is_failure, reasons[0]  # the empty password file admits nobody
    assert not broker.running
    assert not broker.dir.exists()


@pytest.mark.services
def test_influxd_write_query_and_keep_data_across_restart(influxd: Influxd, influx_db: str) -> None:
    assert influxd.url == f"http://127.0.0.1:{influxd.port}"
    assert (
        post(
            f"{influxd.url}/write?db={influx_db}",
            b"probe,branch=b value=42i 1700000000000000000\n",
        )
        == 204
    )
    answer = influxd.query("SELECT value FROM probe", influx_db)
    assert answer["results"][0]["series"][0]["values"] == [["2023-11-14T22:13:20Z", 42]]
    influxd.stop()
    assert not influxd.running
    influxd.start()
    assert influxd.rows("SELECT value FROM probe", influx_db) == [["2023-11-14T22:13:20Z", 42]]


@pytest.mark.services
def test_influx_db_is_a_fresh_database(influxd: Influxd, influx_db: str) -> None:
    names = [row[0] for row in influxd.rows("SHOW DATABASES", influx_db)]
    assert influx_db in names
    assert influxd.rows("SHOW MEASUREMENTS", influx_db) == []


@pytest.mark.services
def test_victoria_metrics_accepts_v1_and_v2_writes(victoria_metrics: VictoriaMetrics) -> None:
    name = "probe_" + uuid.uuid4().hex[:8]
    for path, measurement, value in (
        ("/write?db=x", f"{name}_v1", 7),
        ("/api/v2/write?bucket=x&precision=ns", f"{name}_v2", 8),
    ):
        line = f"{measurement},branch=b value={value} 1700000000000000000\n"
        assert post(victoria_metrics.url + path, line.encode()) == 204
    series = {
        s["metric"]["__name__"]: s for s in victoria_metrics.export(f'{{__name__=~"{name}_.*"}}')
    }
    assert sorted(series) == [f"{name}_v1_value", f"{name}_v2_value"]
    v1, v2 = series[f"{name}_v1_value"], series[f"{name}_v2_value"]
    assert (v1["values"], v1["timestamps"]) == ([7], [1700000000000])
    assert (v2["values"], v2["timestamps"]) == ([8], [1700000000000])
    assert v1["metric"] == {"__name__": f"{name}_v1_value", "branch": "b", "db": "x"}
    assert v2["metric"] == {"__name__": f"{name}_v2_value", "branch": "b"}


class Exits(Service):
    """A 'server' that exits at once, as one with a broken config would."""

    name = "exits"

    def command(self) -> list[str]:
        return [sys.executable, "-c", "raise SystemExit(3)"]

    def ready(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [("true", pytest.fail.Exception), ("", pytest.skip.Exception)],
    ids=["ci-fails", "elsewhere-skips"],
)
def test_a_server_that_cannot_start_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("CI", ci)
    made: list[Exits] = []

    def factory() -> Exits:
        made.append(Exits())
        return made[-1]

    with pytest.raises(outcome, match="exits exited at start"):
        start_or_fail(factory)
    assert not made[0].running
    assert not made[0].dir.exists()  # its temporary directory is gone too


def missing_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every binary look uninstalled, as on a fresh machine."""
    monkeypatch.setattr(shutil, "which", lambda *_a, **_k: None)
    monkeypatch.setattr(Path, "exists", lambda _self: False)


@pytest.mark.parametrize(
    ("service", "binary", "package"),
    [
        (Mosquitto, "mosquitto", "mosquitto"),
        (Influxd, "influxd", "influxdb"),
        (VictoriaMetrics, "victoria-metrics", "victoria-metrics"),
    ],
)
def test_a_missing_binary_is_named_with_its_debian_package(
    monkeypatch: pytest.MonkeyPatch, service: type[Service], binary: str, package: str
) -> None:
    with monkeypatch.context() as patch:
        missing_binaries(patch)
        with pytest.raises(ServiceUnavailable) as info:
            service()
    message = str(info.value)
    assert message.startswith(f"{binary} is not installed")
    assert f"Debian package {package}" in message


def test_a_missing_binary_leaves_no_temporary_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with monkeypatch.context() as patch:
            missing_binaries(patch)
            with pytest.raises(ServiceUnavailable):
                Influxd()
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
