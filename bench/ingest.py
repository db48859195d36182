"""MQTT devices publishing as fast as they can, through a real Mosquitto, into the gateway, its
outbox and a real influxd — against a naive path that writes each message as it arrives.

Prints end-to-end points/s for the gateway (from the first publish until influxd holds every
point), the same for the naive path (one HTTP write per message, as Home Assistant's InfluxDB
integration does), their ratio, and the gateway process's peak RSS.

    .venv/bin/python bench/ingest.py [--messages 200000] [--devices 40]

Set PYSPY=/tmp/profile.txt to record the gateway process with py-spy (raw format) while the
messages flow (pip install py-spy first); that is how the v5 bottleneck was found.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge.devservers import Influxd, Mosquitto

ROOT = Path(__file__).resolve().parents[1]

PUBLISHER = """
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
host, port, devices, messages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
client.max_queued_messages_set(0)
client.connect(host, port)
client.loop_start()
time.sleep(0.2)
print(time.time(), flush=True)  # the first publish: where "end to end" starts
for i in range(messages):
    d = i % devices
    payload = json.dumps({"lines": [{"id": 0, "fw": i, "bw": i // 2}]})
    client.publish(f"bench/counter-{d}", payload, qos=0)
    if i % 2000 == 1999:
        time.sleep(0.001)  # let the network thread write
time.sleep(1)
client.loop_stop()
client.disconnect()
"""


def count(influxd: Influxd, db: str) -> int:
    rows = influxd.rows("SELECT count(entered) FROM occupancy", db)
    return int(rows[0][1]) if rows else 0


def wait_for(influxd: Influxd, db: str, expected: int, timeout: float) -> tuple[int, float]:
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        got = count(influxd, db)
        if got >= expected:
            break
        time.sleep(0.1)
    return got, time.monotonic()


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def publish(broker: Mosquitto, devices: int, messages: int) -> tuple[subprocess.Popen[str], float]:
    """Start the publisher; return it and the wall time of its first publish."""
    argv = [sys.executable, "-c", PUBLISHER, broker.host, str(broker.port)]
    proc = subprocess.Popen([*argv, str(devices), str(messages)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, float(proc.stdout.readline())


def gateway_run(
    *, broker: Mosquitto, influxd: Influxd, db: str, devices: int, tmp: Path, n: int, protocol: str
) -> tuple[float, float, int]:
    config = {
        "branch": {"id": "bench", "name": "Ingest benchmark"},
        "mqtt": {"host": broker.host, "port": broker.port, "protocol": protocol},
        "sinks": [
            {
                "type": "influxdb_v1",
                "url": influxd.url,
                "database": db,
                "batch_size": 5000,
                "flush_interval": 0.2,
            }
        ],
        "store": {"path": str(tmp / f"outbox-{db}.db"), "max_bytes": 2_000_000_000},
        "devices": [
            {
                "id": f"counter-{d}",
                "profile": "xovis-pc-line-count",
                "transport": {"type": "mqtt", "topic": f"bench/counter-{d}"},
            }
            for d in range(devices)
        ],
    }
    path = tmp / f"gateway-{db}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    gw = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "gateway", "run", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert gw.stderr is not None
    for line in gw.stderr:  # wait until the gateway is subscribed
        if "plan counter-" in line:
            break
    time.sleep(1.5)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], peak_rss_mb(gw.pid))
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    threading.Thread(target=lambda: [None for _ in gw.stderr], daemon=True).start()  # type: ignore[union-attr]
    if os.environ.get("PYSPY"):
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-d",
                "8",
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                os.environ["PYSPY"],
                "--pid",
                str(gw.pid),
                "--threads",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
    pub, first = publish(broker, devices, n)
    t0 = time.monotonic() - (time.time() - first)  # the first publish, on the monotonic clock
    got, t1 = wait_for(influxd, db, n, timeout=120)  # counts while the publisher finishes
    pub.wait()
    print(f"  (all {got:,} points stored {t1 - t0:.1f} s after the first publish)")
    done.set()
    peak[0] = max(peak[0], peak_rss_mb(gw.pid))
    gw.terminate()
    gw.wait(30)
    return got / (t1 - t0), peak[0], got


def naive_run(
    broker: Mosquitto, influxd: Influxd, db: str, devices: int, n: int
) -> tuple[float, int]:
    """Subscribe and write each message to InfluxDB as it arrives."""
    conn = http.client.HTTPConnection(influxd.host, influxd.port, timeout=30)
    written = [0]
    lock = threading.Lock()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-naive")

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        doc = json.loads(message.payload)
        device = message.topic.rsplit("/", 1)[1]
        line = (
            f"occupancy,branch=bench,device={device} "
            f"entered={doc['lines'][0]['fw']}i,exited={doc['lines'][0]['bw']}i {time.time_ns()}"
        )
        with lock:
            conn.request("POST", f"/write?db={db}&precision=n", body=line.encode())
            response = conn.getresponse()
            response.read()
            written[0] += 1

    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe("bench/#", qos=0)
    client.loop_start()
    time.sleep(0.5)
    pub, first = publish(broker, devices, n)
    t0 = time.monotonic() - (time.time() - first)
    pub.wait()
    deadline = time.monotonic() + 120
    while written[0] < n and time.monotonic() < deadline:
        time.sleep(0.1)
        if written[0] and time.monotonic() - t0 > 5 and count(influxd, db) >= n:
            break
    t1 = time.monotonic()
    client.loop_stop()
    client.disconnect()
    return written[0] / (t1 - t0), written[0]


def machine_speed() -> float:
    """Millions of iterations per second of a fixed pure-Python loop: how fast this machine's
    one core runs Python right now, so runs on different days can be compared (the shared
    machines here have shown it vary by 2x)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - t0)
    return 2.0 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--naive-messages", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=40)
    args = parser.parse_args()
    speed_before = machine_speed()
    extra = "max_queued_messages 1000000\nmax_inflight_messages 0\n"
    with Mosquitto(extra) as broker, Influxd() as influxd, tempfile.TemporaryDirectory() as tmp:
        results = {}
        for protocol in ("5", "3.1.1"):
            db = "bench_gateway_" + protocol.replace(".", "")
            influxd.query(f'CREATE DATABASE "{db}"')
            results[protocol] = gateway_run(
                broker=broker,
                influxd=influxd,
                db=db,
                devices=args.devices,
                tmp=Path(tmp),
                n=args.messages,
                protocol=protocol,
            )
        influxd.query('CREATE DATABASE "bench_naive"')
        naive, written = naive_run(
            broker, influxd, "bench_naive", args.devices, args.naive_messages
        )
    print(
        f"naive (one write per message): {written:,} of {args.naive_messages:,}, "
        f"{naive:,.0f} points/s"
    )
    for protocol, (rate, peak, got) in results.items():
        print(
            f"gateway, MQTT {protocol}: {got:,} of {args.messages:,} points in influxd, "
            f"{rate:,.0f} points/s end to end, {rate / naive:.1f}x naive, peak RSS {peak:.0f} MB"
        )
    print("targets: >= 20,000 points/s, >= 10x naive, peak RSS < 150 MB")
    print(
        f"machine: {speed_before:.1f} / {machine_speed():.1f} M loop iterations/s (before / after)"
    )


if __name__ == "__main__":
    main()
