"""MQTT devices publishing as fast as they can, through a real Mosquitto, into the gateway, its
outbox and a real influxd — against a naive path that writes each message as it arrives.

Prints end-to-end points/s for the gateway (from the first publish until influxd holds every
point), the same for the naive path (one HTTP write per message, as Home Assistant's InfluxDB
integration does), their ratio, the gateway process's peak RSS, and the CPU time per point of
each process (gateway, Mosquitto, influxd, publisher).

The simulated devices are one lean publisher process that encodes every PUBLISH packet before
the clock starts and then writes them to its socket as fast as TCP takes them: devices are
hardware of their own, and a paho publisher encoding JSON in Python took 30-40 us of CPU per
message from the same two cores the gateway is measured on (decision 37).

    .venv/bin/python bench/ingest.py [--messages 200000] [--devices 40]

Set PYSPY=/tmp/profile to record the gateway process with py-spy (raw format, one file per
run: /tmp/profile-bench_gateway_5.txt, ...) while the messages flow (pip install py-spy
first); that is how the v5 bottleneck was found. ``--protocols 5`` measures one protocol only.
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

from openbranch.edge.core import schema
from openbranch.edge.demo.servers import Influxd, Mosquitto

ROOT = Path(__file__).resolve().parents[1]

PUBLISHER = """
import json, socket, sys, time
from openbranch.integrations.mqtt.simulator import connect_packet, publish_packet
host, port, devices, messages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
# Every device's messages are encoded before the clock starts: the simulated devices stand
# for hardware of their own, so their encoding should not eat the gateway's two cores. Their
# counts grow as a door allows (one person per 1,000 messages of a device): the gateway
# refuses a count that outruns a door (edge/core/plausible.py).
def count(i):
    k = i // devices  # this device's k-th message
    return {"lines": [{"id": 0, "fw": 1000 + k // 1000, "bw": 900 + k // 2000}]}
packets = [
    publish_packet(f"bench/counter-{i % devices}", json.dumps(count(i)).encode())
    for i in range(messages)
]
sock = socket.create_connection((host, port))
sock.sendall(connect_packet("bench-publisher"))
assert sock.recv(4)[:1] == b"\\x20", "no CONNACK"
print(time.time(), flush=True)  # the first publish: where "end to end" starts
for i in range(0, messages, 500):
    sock.sendall(b"".join(packets[i : i + 500]))  # as fast as TCP takes them
time.sleep(1)
sock.sendall(b"\\xe0\\x00")  # DISCONNECT
sock.close()
"""


def count(influxd: Influxd, db: str) -> int:
    entered, occupancy = schema.OCCUPANCY_ENTERED.key, schema.OCCUPANCY.name
    rows = influxd.rows(f'SELECT count("{entered}") FROM "{occupancy}"', db)
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


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Samples the CPU time of named processes; ``used()`` is each one's CPU seconds between
    ``start()`` and its last sample (a process that exited keeps its last figure)."""

    def __init__(self) -> None:
        self.pids: dict[str, int | None] = {}
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def sample(self) -> None:
        for name, pid in self.pids.items():
            now = cpu_seconds(pid)
            if now is not None:
                self.first.setdefault(name, now)
                self.last[name] = now

    def used(self) -> dict[str, float]:
        return {name: self.last[name] - self.first[name] for name in self.last}


def publish(broker: Mosquitto, devices: int, messages: int) -> tuple[subprocess.Popen[str], float]:
    """Start the publisher; return it and the wall time of its first publish."""
    argv = [sys.executable, "-c", PUBLISHER, broker.host, str(broker.port)]
    proc = subprocess.Popen(
        [*argv, str(devices), str(messages)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    return proc, float(proc.stdout.readline())


def gateway_run(
    *, broker: Mosquitto, influxd: Influxd, db: str, devices: int, tmp: Path, n: int, protocol: str
) -> tuple[float, float, int, dict[str, float]]:
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
        [sys.executable, "-m", "openbranch.edge.cli", "gateway", "run", str(path)],
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
    cpu = CpuMeter()
    cpu.pids = {"gateway": gw.pid, "mosquitto": broker.pid, "influxd": influxd.pid}

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], peak_rss_mb(gw.pid))
            cpu.sample()
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
                f"{os.environ['PYSPY']}-{db}.txt",
                "--pid",
                str(gw.pid),
                "--threads",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
    cpu.sample()
    pub, first = publish(broker, devices, n)
    cpu.pids["publisher"] = pub.pid
    t0 = time.monotonic() - (time.time() - first)  # the first publish, on the monotonic clock
    got, t1 = wait_for(influxd, db, n, timeout=120)  # counts while the publisher finishes
    cpu.sample()
    pub.wait()
    print(f"  (all {got:,} points stored {t1 - t0:.1f} s after the first publish)")
    done.set()
    peak[0] = max(peak[0], peak_rss_mb(gw.pid))
    gw.terminate()
    gw.wait(30)
    return got / (t1 - t0), peak[0], got, cpu.used()


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
            f"{schema.OCCUPANCY.name},{schema.Tag.BRANCH}=bench,{schema.Tag.DEVICE}={device} "
            f"{schema.OCCUPANCY_ENTERED.key}={doc['lines'][0]['fw']}i,"
            f"{schema.OCCUPANCY_EXITED.key}={doc['lines'][0]['bw']}i {time.time_ns()}"
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
    parser.add_argument(
        "--warmup", type=int, default=20_000, help="messages of an uncounted first run (0: none)"
    )
    parser.add_argument(
        "--protocols", default="5,3.1.1", help="the MQTT versions to measure, comma-separated"
    )
    args = parser.parse_args()
    speed_before = machine_speed()
    extra = "max_queued_messages 1000000\nmax_inflight_messages 0\n"
    with Mosquitto(extra) as broker, Influxd() as influxd, tempfile.TemporaryDirectory() as tmp:
        if args.warmup:  # a fresh influxd's first writes cost it more (shards, index, cache)
            influxd.query('CREATE DATABASE "bench_warmup"')
            rate, _, got, _ = gateway_run(
                broker=broker,
                influxd=influxd,
                db="bench_warmup",
                devices=args.devices,
                tmp=Path(tmp),
                n=args.warmup,
                protocol="5",
            )
            print(f"warm-up: {got:,} of {args.warmup:,} points, {rate:,.0f} points/s (not counted)")
        results = {}
        for protocol in args.protocols.split(","):
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
    for protocol, (rate, peak, got, used) in results.items():
        print(
            f"gateway, MQTT {protocol}: {got:,} of {args.messages:,} points in influxd, "
            f"{rate:,.0f} points/s end to end, {rate / naive:.1f}x naive, peak RSS {peak:.0f} MB"
        )
        print(
            "  CPU per point: "
            + ", ".join(f"{name} {seconds / got * 1e6:.1f} us" for name, seconds in used.items())
            + f"; the machine has {os.cpu_count()} cores"
        )
    print("floor: >= 10,000 points/s, v5 and 3.1.1 (decision 41); >= 10x naive; RSS < 150 MB")
    print(
        f"machine: {speed_before:.1f} / {machine_speed():.1f} M loop iterations/s (before / after)"
    )


if __name__ == "__main__":
    main()
