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
from collections.abc import Callable
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


class Branch:
    """A gateway process (under the file-size limit when ``limited``), a people counter that
    publishes its running count at QoS 1, and a watcher of the gateway's topics."""

    def __init__(self, tmp_path: Path, broker: Mosquitto) -> None:
        raw = _config(tmp_path, broker)
        self.path = tmp_path / "gateway.yaml"
        self.path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        self.config = GatewayConfig.model_validate(raw)
        self.watcher = Watcher(broker.host, broker.port, "openbranch/full/#")
        self.sent = 0
        self.gateway: subprocess.Popen[str] | None = None

    def start(self, *, limited: bool) -> None:
        self.watcher.messages.clear()
        self.gateway = subprocess.Popen(
            [sys.executable, "-m", "openbranch.edge.cli", "gateway", "run", str(self.path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_limited if limited else None,  # noqa: PLW1509 - resource and signal
        )
        self.watcher.wait_for(  # the gateway is up
            lambda seen: any(m.payload == b"online" for m in seen), timeout=30
        )

    def alert_is(self, active: bool) -> bool:
        for message in reversed(self.watcher.messages):
            if message.topic != "openbranch/full/gateway/state":
                continue
            state = json.loads(message.payload)
            if "alert/store_failed" in state:
                return bool(state["alert/store_failed"]["active"] is active)
        return False

    def publish_until(self, done: Callable[[], bool], within: float) -> None:
        deadline = time.monotonic() + within
        while not done():
            assert time.monotonic() < deadline, f"not within {within} s ({self.sent} sent)"
            self.sent += 1
            payload = {"lines": [{"id": 0, "fw": self.sent, "bw": 0}]}
            self.watcher.publish(TOPIC, json.dumps(payload).encode())
            time.sleep(0.002)  # a busy entrance, not a flood the broker would drop from

    def wait_all_committed(self, within: float = 60) -> list[int]:
        deadline = time.monotonic() + within
        while sorted(set(_entered(self.config))) != list(range(1, self.sent + 1)):
            missing = sorted(set(range(1, self.sent + 1)) - set(_entered(self.config)))
            assert time.monotonic() < deadline, f"not committed: {missing[:20]} of {self.sent}"
            time.sleep(0.2)
        return _entered(self.config)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> str:
        assert self.gateway is not None
        self.gateway.send_signal(sig)
        out, _ = self.gateway.communicate(timeout=60)
        return out


def test_a_full_disk_is_an_alert_and_loses_no_acknowledged_message(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    branch = Branch(tmp_path, mosquitto)
    branch.start(limited=True)
    try:
        branch.publish_until(functools.partial(branch.alert_is, True), within=120)
        branch.publish_until(lambda: branch.sent % 50 == 0, within=30)  # more while it is full
        status = _status(branch.path)
        # SQLite says "disk I/O error" for a file-size limit, "database or disk is full" for
        # a full file system: either is the store refusing the commit.
        assert "STORE REFUSES COMMITS: OperationalError: " in status
        assert "store_failed: the local store refuses commits" in status
        assert "task device:counter: running, 0 restarts" in status  # every task, by name
        assert "task engine" not in status  # no hours in this config: no engine task
        assert branch.gateway is not None
        resource.prlimit(
            branch.gateway.pid,
            resource.RLIMIT_FSIZE,
            (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
        )
        branch.publish_until(functools.partial(branch.alert_is, False), within=60)
        entered = branch.wait_all_committed()
        assert sorted(entered) == list(range(1, branch.sent + 1))  # each once, none lost
    finally:
        out = branch.stop()
        branch.watcher.close()
    assert "outbox: commit failed (" in out, out
    assert "; retrying, nothing is dropped" in out, out


def test_a_gateway_killed_while_the_disk_is_full_gets_every_message_again(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """QoS 1 messages are acknowledged to the broker only once committed: what the gateway
    held in memory when it died is sent again by the broker to the restarted gateway
    (persistent session), and nothing it had committed comes twice."""
    branch = Branch(tmp_path, mosquitto)
    branch.start(limited=True)
    try:
        branch.publish_until(functools.partial(branch.alert_is, True), within=120)
        branch.publish_until(lambda: branch.sent % 50 == 0, within=30)
        committed_before = len(_entered(branch.config))
        assert committed_before < branch.sent  # some were held in memory, unacknowledged
        branch.stop(signal.SIGKILL)
        branch.start(limited=False)  # the disk has room again
        entered = branch.wait_all_committed()
        assert sorted(entered) == list(range(1, branch.sent + 1))  # each exactly once
    finally:
        branch.stop()
        branch.watcher.close()
