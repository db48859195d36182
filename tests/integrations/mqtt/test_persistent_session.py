"""Nothing lost while restarting: a gateway process is killed (SIGKILL, no goodbye), a device
publishes QoS 1 messages while it is down, the gateway starts again with the same config, and
every one of those messages is in its outbox exactly once. The broker kept them for the
gateway's persistent session (stable client id, clean_start=False / clean_session=False, QoS 1
subscriptions)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from openbranch.edge.telemetry.outbox import Outbox, OutboxNotReady
from tests.mqttwatch import Watcher
from tests.services import Mosquitto
from tests.support.waiting import until_blocking

ROOT = Path(__file__).resolve().parents[3]
TOPIC = "xovis/pc-12/counts"
ENTERED = re.compile(r"\bentered=(\d+)i\b")


def counts(store: Path) -> Counter[int]:
    """How often each ``entered`` value is in the outbox (read beside the running gateway)."""
    try:
        outbox = Outbox(store, read_only=True)
    except (FileNotFoundError, OutboxNotReady):  # the gateway has not made it yet
        return Counter()
    with outbox:
        return Counter(
            int(m.group(1))
            for e in outbox.lines(device="counter")
            if (m := ENTERED.search(e.line)) is not None
        )


def payload(entered: int) -> bytes:
    return json.dumps({"lines": [{"id": 0, "fw": entered, "bw": 0}]}).encode()


def start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "openbranch.edge.cli", "gateway", "run", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_what_a_device_sent_while_the_gateway_was_killed_arrives_once_after_restart(
    mosquitto: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    store = tmp_path / "outbox.db"
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "branch": {"id": "persist", "name": "Persistent session"},
                "mqtt": {
                    "host": mosquitto.host,
                    "port": mosquitto.port,
                    "keepalive": 5,
                    "protocol": protocol,
                },
                "store": {"path": str(store)},
                "devices": [
                    {
                        "id": "counter",
                        "profile": "xovis-pc-line-count",
                        "transport": {"type": "mqtt", "topic": TOPIC},
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    total = 300
    gateway = start(config)
    try:
        with Watcher(mosquitto.host, mosquitto.port, "ignored") as device:
            # The gateway's subscription is in place once a probe (entered=0) is committed.
            deadline = time.monotonic() + 30
            while not counts(store)[0]:
                assert time.monotonic() < deadline, "the gateway never committed a probe"
                device.publish(TOPIC, payload(0))
                probe_sent = time.monotonic()
                while not counts(store)[0] and time.monotonic() < probe_sent + 1:
                    time.sleep(0.05)
            gateway.send_signal(signal.SIGKILL)
            gateway.wait(10)
            for entered in range(1, total + 1):  # each acknowledged by the broker
                device.publish(TOPIC, payload(entered))
        gateway = start(config)
        until_blocking(
            lambda: all(counts(store)[n] for n in range(1, total + 1)),
            within=30,
            what="every message sent while the gateway was down",
        )
        gateway.send_signal(signal.SIGTERM)  # a clean stop: the last commit, then offline
        assert gateway.wait(30) == 0
    finally:
        gateway.kill()
        gateway.wait()
    seen = counts(store)
    assert {n: seen[n] for n in range(1, total + 1)} == dict.fromkeys(range(1, total + 1), 1)
