"""A full disk is an alert, not a silent loss (issue 12 point 8), against a real gateway
process, a real Mosquitto and a real file-size limit.

The gateway runs with a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored): once its store
reaches it, every commit fails as on a full disk ("database or disk is full"). A people
counter publishes a running count at QoS 1 throughout. The test asserts the alert on the
gateway's MQTT state topic, what ``gateway status`` says, and — once the limit is lifted, as
a person freeing the disk would — that every message the counter published is in the store
exactly once and the alert is cleared.
"""

from __future__ import annotations

import functools
import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from openbranch.edge.core import schema
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.runtime.gateway import open_outbox
from tests.mqttwatch import Watcher
from tests.services import Mosquitto

ROOT = Path(__file__).resolve().parents[3]
TOPIC = "xovis/pc-1/counts"
LIMIT = 300_000  # bytes a file of the gateway may have while the disk is "full"


def _config(tmp_path: Path, broker: Mosquitto) -> dict[str, object]:
    return {
        "branch": {"id": "full", "name": "Disk full"},
        "mqtt": {"host": broker.host, "port": broker.port},
        "store": {"path": str(tmp_path / "outbox.db"), "max_bytes": 500_000_000},
        "devices": [
            {
                "id": "counter",
                "profile": "xovis-pc-line-count",
                "transport": {"type": "mqtt", "topic": TOPIC},
            }
        ],
    }


def _limited() -> None:  # in the child, before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))


def _entered(config: GatewayConfig) -> list[int]:
    store = open_outbox(config, read_only=True)
    try:
        return [
            int(e.line.split("entered=")[1].split("i")[0])
            for e in store.lines(measurement=schema.OCCUPANCY.name)
        ]
    finally:
        store.close()


def _status(path: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "openbranch.edge.cli", "gateway", "status", str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return out.stdout


def test_a_full_disk_is_an_alert_and_loses_no_acknowledged_message(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    raw = _config(tmp_path, mosquitto)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    config = GatewayConfig.model_validate(raw)
    state_topic = "openbranch/full/gateway/state"
    watcher = Watcher(mosquitto.host, mosquitto.port, "openbranch/full/#")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "openbranch.edge.cli", "gateway", "run", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_limited,  # noqa: PLW1509 - only resource and signal calls
    )
    sent = 0

    def alert_is(active: bool) -> bool:
        for message in reversed(watcher.messages):
            if message.topic != state_topic:
                continue
            state = json.loads(message.payload)
            if "alert/store_failed" in state:
                return bool(state["alert/store_failed"]["active"] is active)
        return False

    def publish_until(done: object, within: float) -> None:
        nonlocal sent
        deadline = time.monotonic() + within
        while not done():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"not within {within} s ({sent} sent)"
            sent += 1
            payload = {"lines": [{"id": 0, "fw": sent, "bw": 0}]}
            watcher.publish(TOPIC, json.dumps(payload).encode())
            time.sleep(0.002)  # a busy entrance, not a flood the broker would drop from

    try:
        watcher.wait_for(  # the gateway is up
            lambda seen: any(m.payload == b"online" for m in seen), timeout=30
        )
        publish_until(functools.partial(alert_is, True), within=120)
        publish_until(lambda: sent % 50 == 0, within=30)  # and some more while it is full
        status = _status(path)
        # SQLite says "disk I/O error" for a file-size limit, "database or disk is full" for
        # a full file system: either is the store refusing the commit.
        assert "STORE REFUSES COMMITS: OperationalError: " in status
        assert "store_failed: the local store refuses commits" in status
        resource.prlimit(
            gateway.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
        publish_until(functools.partial(alert_is, False), within=60)
        deadline = time.monotonic() + 60
        while sorted(set(_entered(config))) != list(range(1, sent + 1)):
            missing = sorted(set(range(1, sent + 1)) - set(_entered(config)))
            assert time.monotonic() < deadline, f"not committed: {missing[:20]} of {sent}"
            time.sleep(0.2)
        entered = _entered(config)
        assert sorted(entered) == list(range(1, sent + 1))  # each once, none lost
    finally:
        gateway.send_signal(signal.SIGTERM)
        out, _ = gateway.communicate(timeout=60)
        watcher.close()
    assert gateway.returncode == 0, out
    assert "outbox: commit failed (" in out, out
    assert "; retrying, nothing is dropped" in out, out
