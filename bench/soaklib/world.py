"""The soak's world: the demo branch's devices, the servers, and the records the checker needs.

``World`` runs in the soak's process: the demo's simulated devices (Modbus TCP servers and
MQTT devices driven by ``BranchScenario`` on the world's accelerated clock), passage counters
that publish a value of their own in every message and record each one the broker
acknowledged (``Pushed``), a record of every poll a Modbus device answered (``Answered``),
a private Mosquitto and influxd, a ``FaultyProxy`` in front of influxd for one of the two
sinks, the gateway process (``GatewayProcess``), and a tailer that copies every entry the
gateway commits into an ``AcceptedLog`` before the outbox's bound can trim it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench.soaklib.gatewayproc import GatewayProcess, world_instant
from bench.soaklib.invariants import AcceptedLog, Answered, ProducedValue, Pushed, Sample
from bench.soaklib.proxy import FaultyProxy
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.device import deadbands_of
from openbranch.edge.core.registry import BuildContext, default_registry, load_checked
from openbranch.edge.core.schedule import OpeningHours
from openbranch.edge.demo.day import prepare_config
from openbranch.edge.demo.scenario import BranchScenario
from openbranch.edge.demo.servers import Influxd, Mosquitto
from openbranch.edge.hours.calendar import Calendar
from openbranch.integrations.modbus.decode import NoValue
from openbranch.integrations.modbus.device import ModbusDevice, decode_point
from openbranch.integrations.modbus.planner import Request
from openbranch.integrations.modbus.register import Table

__all__ = ["PASSAGE_EVERY", "World", "WorldClock"]

PASSAGE_EVERY = 30.0  # seconds of world time between two messages of a passage counter
STEP_EVERY = 0.2  # real seconds between two steps of the scenario
_READ_TABLES = {1: Table.COIL, 2: Table.DISCRETE_INPUT, 3: Table.HOLDING, 4: Table.INPUT}


@dataclass(frozen=True, slots=True)
class WorldClock:
    """The world's time: ``start`` at the machine's monotonic ``mono0``, ``speed`` x real."""

    start: datetime
    mono0: float
    speed: float

    def now(self) -> datetime:
        return world_instant(self.start, self.mono0, self.speed, time.monotonic())

    def at(self, when: datetime) -> float:
        """The machine's monotonic time at the world's instant ``when``."""
        return self.mono0 + (when - self.start).total_seconds() / self.speed

    async def until(self, when: datetime) -> None:
        await asyncio.sleep(max(0.0, self.at(when) - time.monotonic()))


def _ns(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000_000)


@dataclass(slots=True)
class _Sent:
    device: str
    value: int
    connects: int  # the publisher's connection count when it published


@dataclass(slots=True)
class PassageCounters:
    """Counters at passages people walk through both ways (``fw`` = ``bw`` = the message's
    number, so they add nobody to the branch's count) publishing at QoS 1 every
    ``PASSAGE_EVERY`` seconds of world time; the broker's PUBACK makes a message produced."""

    host: str
    port: int
    devices: Mapping[str, str]  # device id -> topic
    gateway_ns: Callable[[], int]  # the gateway's clock now (ns), for the record
    pushed: list[Pushed] = field(default_factory=list)
    sent: int = 0
    connects: int = 0
    _next: dict[str, int] = field(default_factory=dict)
    _waiting: dict[int, _Sent] = field(default_factory=dict)
    _early: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: mqtt.Client | None = None

    def start(self) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"soak-passages-{uuid.uuid4().hex[:6]}"
        )
        client.max_queued_messages_set(0)  # a device keeps what it counted while offline
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.reconnect_delay_set(0.05, 0.5)
        client.connect_async(self.host, self.port, keepalive=5)
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_connect(self, *_: object) -> None:
        with self._lock:
            self.connects += 1

    def _on_publish(self, _c: object, _u: object, mid: int, *_: object) -> None:
        # paho calls this on its thread holding its own lock: ours is never held around a
        # paho call (the two locks taken in opposite orders would deadlock)
        with self._lock:
            sent = self._waiting.pop(mid, None)
            if sent is None:
                self._early.add(mid)  # acknowledged before ``publish`` noted it
                return
            self._record(sent)

    def _record(self, sent: _Sent) -> None:
        copies = 1 if sent.connects == self.connects else 2  # sent again after a reconnect
        self.pushed.append(
            Pushed(
                device=sent.device,
                measurement="occupancy",
                field="entered",
                value=sent.value,
                time_ns=self.gateway_ns(),
                copies=copies,
            )
        )

    def publish(self) -> None:
        """One message from every counter."""
        assert self._client is not None
        for device, topic in self.devices.items():
            value = self._next.get(device, 0) + 1
            self._next[device] = value
            payload = json.dumps(
                {"lines": [{"id": 0, "name": "Passage", "fw": value, "bw": value}]}
            )
            with self._lock:
                connects = self.connects
            info = self._client.publish(topic, payload.encode(), qos=1)
            with self._lock:
                sent = _Sent(device, value, connects)
                if info.mid in self._early:
                    self._early.discard(info.mid)
                    self._record(sent)
                else:
                    self._waiting[info.mid] = sent
            self.sent += 1

    def garble(self) -> None:
        """A message that is no reading (not JSON): the gateway must refuse and count it."""
        assert self._client is not None
        for topic in self.devices.values():
            self._client.publish(topic, b"\xff\xfe garbage {", qos=1)

    @property
    def unacknowledged(self) -> int:
        with self._lock:
            return len(self._waiting)


class StateWatcher:
    """What the gateway's retained state topic says (``{prefix}/{branch}/gateway/state``):
    the alerts a dashboard or Home Assistant shows, for faults ``gateway status`` cannot see
    (a read-only store: the status file beside it cannot be written either)."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.state: dict[str, Any] = {}
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"soak-watch-{uuid.uuid4().hex[:6]}"
        )
        self._client.on_connect = lambda c, *_: c.subscribe(topic, 1)
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.05, 0.5)
        self._client.connect_async(host, port, keepalive=5)
        self._client.loop_start()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(ValueError):
            self.state = json.loads(message.payload)

    def alerts(self) -> set[str]:
        """The alert kinds the state topic shows as active."""
        return {
            key.removeprefix("alert/")
            for key, value in dict(self.state).items()
            if key.startswith("alert/") and isinstance(value, dict) and value.get("active")
        }

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Tailer:
    """Copies every committed entry of the outbox (by seq) into an ``AcceptedLog``, a few
    times a second, on a thread of its own; reads the drop counter and the cursors too."""

    def __init__(self, store: Path, log: AcceptedLog) -> None:
        self.store = store
        self.log = log
        self.dropped = 0
        self.cursors: dict[str, int] = {}
        self._db: sqlite3.Connection | None = None
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._paused = False
        self._thread = threading.Thread(target=self._run, name="tailer", daemon=True)
        self.error = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.once()
        if self._db is not None:
            self._db.close()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                if self._paused:
                    continue
                try:
                    self.once()
                except sqlite3.Error as exc:  # the store is being created or is locked
                    self.error = str(exc)

    def pause(self) -> None:
        """Copy what is there, then let go of the store (it is about to be unmounted)."""
        with self._lock:
            self.once()
            if self._db is not None:
                self._db.close()
                self._db = None
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def once(self) -> int:
        """Copy what is new; returns the highest seq copied."""
        if self._db is None:
            if not self.store.exists():
                return 0
            self._db = sqlite3.connect(
                f"{self.store.resolve().as_uri()}?mode=ro",
                uri=True,
                check_same_thread=False,
                timeout=30,
            )
        last = self.log.last_seq()
        while True:
            rows = self._db.execute(
                "SELECT seq, time_ns, measurement, device, audit, line FROM entries"
                " WHERE seq > ? ORDER BY seq LIMIT 20000",
                (last,),
            ).fetchall()
            if not rows:
                break
            self.log.add(rows)
            last = int(rows[-1][0])
        with contextlib.suppress(sqlite3.Error):
            row = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
            self.dropped = 0 if row is None else int(row[0])
            self.cursors = {str(s): int(a) for s, a in self._db.execute("SELECT * FROM cursors")}
        return last

    def newest_seq(self) -> int:
        """The outbox's highest seq right now (a fresh read, not the copy)."""
        with self._lock:
            if self._db is None:
                return self.log.last_seq()
            with contextlib.suppress(sqlite3.Error):
                (top,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()
                return int(top)
            return self.log.last_seq()


class World:
    """Everything around the gateway (see the module docstring). ``setup()`` builds and
    starts it; ``close()`` stops it."""

    def __init__(
        self,
        *,
        workdir: Path,
        template: Path,
        start: datetime,
        speed: float,
        max_bytes: int,
        passages: int = 2,
    ) -> None:
        self.workdir = workdir
        self.template = template
        self.start_instant = start
        self.speed = speed
        self.max_bytes = max_bytes
        self.passage_ids = {f"passage-{i + 1}": f"soak/passage-{i + 1}" for i in range(passages)}
        self.answered: list[Answered] = []
        self.deadbands: dict[tuple[str, str, str], float] = {}  # (device, measurement, field)
        self.samples: list[Sample] = []
        self.garbled: dict[tuple[str, str], list[int]] = {}  # (device, point) -> raw words
        self.excuse_polls = ""  # set while a fault makes answered polls yield no reading
        self.excuse_until = 0.0  # real (monotonic) time until which answers are excused
        self.excuse_journal_from = 0
        self.journal_excused: list[tuple[int, int]] = []  # gateway time: journal not committed
        # what the faults did, for the checker and the report
        self.kills: list[int] = []  # gateway time of every SIGKILL
        self.downtimes: list[tuple[int, int]] = []  # gateway time: down, back
        self.steps: list[tuple[int, int]] = []  # gateway time of a clock step, its size
        self.broker_kills: list[tuple[int, int]] = []  # gateway time: broker killed, back
        self.broker_downs: list[tuple[int, int]] = []  # gateway time: broker away, back
        self.broker_down_since = 0
        self.down_since = 0
        self.problems: list[str] = []  # what went wrong outside any invariant
        self._tasks: list[asyncio.Task[None]] = []
        self._t0 = time.monotonic()

    # -- building ------------------------------------------------------------------------

    async def setup(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # a broker as a branch should run it: sessions and queued messages kept on disk
        # (saved every second, and at a clean stop), so a restart loses no queued message;
        # no limit on the messages queued for the gateway: its reconnect backoff is in real
        # seconds (up to 30 s, hours of the branch's time here), which Mosquitto's default
        # of 1000 would not hold
        self.mosquitto = Mosquitto("persistence true\nautosave_interval 1\nmax_queued_messages 0\n")
        self.mosquitto.extra_config += f"persistence_location {self.mosquitto.dir}/\n"
        self.mosquitto.start()
        self.influxd = Influxd()
        self.influxd.start()
        for db in ("soak_a", "soak_b"):
            self.influxd.query(f'CREATE DATABASE "{db}"')
        self.proxy = FaultyProxy(upstream=(self.influxd.host, self.influxd.port))
        await self.proxy.start()
        self.config_path = self._config()
        self.config: GatewayConfig = load_checked(self.config_path)
        self.tz = ZoneInfo(self.config.branch.timezone)
        self.store = Path(self.config.store.path)
        self.calendar = Calendar(self.config.hours or OpeningHours(), self.tz)
        self.clock = WorldClock(self.start_instant, time.monotonic(), self.speed)
        registry = default_registry()
        demo = [d for d in self.config.devices if d.id not in self.passage_ids]
        self.simulations = registry.simulate(demo, mqtt=self.config.mqtt)
        self.devices = {k: v for sim in self.simulations for k, v in sim.devices.items()}
        self.scenario = BranchScenario(
            devices=self.devices,
            timezone=self.tz,
            calendar=self.calendar,
            straggler_until=None,
        )
        self._record_polls(registry)
        for sim in self.simulations:
            await sim.start()
        self.gateway = GatewayProcess(
            config=self.config_path,
            store=self.store,
            start=self.start_instant,
            mono0=self.clock.mono0,
            speed=self.speed,
            log=self.workdir / "gateway.log",
        )
        self.passages = PassageCounters(
            host=self.mosquitto.host,
            port=self.mosquitto.port,
            devices=self.passage_ids,
            gateway_ns=self.gateway_ns,
        )
        self.passages.start()
        self.watcher = StateWatcher(
            self.mosquitto.host,
            self.mosquitto.port,
            f"{self.config.mqtt.topic_prefix if self.config.mqtt else 'openbranch'}/"
            f"{self.config.branch.id}/gateway/state",
        )
        self.accepted = AcceptedLog(self.workdir / "accepted.db")
        self.tailer = Tailer(self.store, self.accepted)
        self.scenario.step(self.clock.now(), 0)
        self.gateway.start()
        self.tailer.start()
        self._tasks = [
            asyncio.create_task(self._drive(), name="scenario"),
            asyncio.create_task(self._publish(), name="passages"),
            asyncio.create_task(self._sample(), name="sampler"),
        ]

    def _config(self) -> Path:
        path = prepare_config(
            self.template,
            self.workdir,
            mqtt=(self.mosquitto.host, self.mosquitto.port),
        )
        data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["mqtt"].pop("protocol", None)  # Mosquitto speaks v5: the gateway's default
        data["mqtt"]["keepalive"] = "5s"
        for i, (device, topic) in enumerate(self.passage_ids.items()):
            data["devices"].append(
                {
                    "id": device,
                    "profile": "xovis-pc-line-count",
                    "zone": f"passage-{i + 1}",
                    "transport": {"type": "mqtt", "topic": topic},
                }
            )
        data["sinks"] = [
            {"type": "influxdb_v1", "url": self.proxy.url, "database": "soak_a"},
            {"type": "influxdb_v1", "url": self.influxd.url, "database": "soak_b"},
        ]
        store = self.workdir / "store"
        store.mkdir(exist_ok=True)
        self.image = self.workdir / "store.ext4"
        subprocess.run(["truncate", "-s", "512M", str(self.image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True)
        self.mounted = store
        self.mount_store()
        data["store"] = {"path": str(store / "outbox.db"), "max_bytes": self.max_bytes}
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    def mount_store(self) -> None:
        """The store's own ext4 file system (a loop device), which turns read-only on an
        error as a branch's SD card does (``errors=remount-ro``)."""
        subprocess.run(
            ["mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.mounted)],
            check=True,
        )

    def store_device(self) -> str:
        """The store's block device name (``loop3``), for /sys/fs/ext4/<name>/."""
        found = subprocess.run(
            ["findmnt", "-no", "SOURCE", str(self.mounted)],
            check=True,
            capture_output=True,
            text=True,
        )
        return Path(found.stdout.strip()).name

    def _record_polls(self, registry: Any) -> None:
        """Record every planned read request a Modbus device answers (its own record), with
        the values it answered, decoded as the gateway decodes them; and the points'
        deadbands (report by exception: the checker's rule for a poll not written)."""
        context = BuildContext(
            branch=self.config.branch.id,
            clock=ScaledClock(start=self.start_instant, speed=self.speed),
        )
        for device in self.config.devices:
            unit = self.devices.get(device.id)
            if unit is None or not hasattr(unit, "answer"):
                continue
            source = registry.build(device, context)
            for (measurement, name), band in deadbands_of(source).items():
                self.deadbands[(device.id, measurement, name)] = band
            planned = {(r.table, r.address, r.count): i for i, r in enumerate(source.requests())}
            requests = {(r.table, r.address, r.count): r for r in source.requests()}
            original = unit.answer

            def answer(
                function: int,
                address: int,
                count: int,
                *,
                _original: Any = original,
                _planned: dict[tuple[Table, int, int], int] = planned,
                _requests: dict[tuple[Table, int, int], Request] = requests,
                _source: ModbusDevice = source,
                _zone: str | None = device.zone,
                _device: str = device.id,
            ) -> Any:
                result = _original(function, address, count)
                table = _READ_TABLES.get(function)
                if isinstance(result, list) and (table, address, count) in _planned:
                    excused = self.excuse_polls
                    if not excused and time.monotonic() < self.excuse_until:
                        excused = "answered while the clock was stepped"
                    key = (table, address, count)
                    place = _planned[key]  # type: ignore[index]
                    values = _values(_source, _requests[key], result, _zone)  # type: ignore[index]
                    self.answered.append(
                        Answered(_device, self.gateway_ns(), excused, place, values)
                    )
                return result

            unit.answer = answer

    # -- running ---------------------------------------------------------------------------

    def gateway_now(self) -> datetime:
        """The gateway's wall clock now (the world's, plus the offset it was stepped by)."""
        return self.clock.now() + timedelta(seconds=self.gateway.offset)

    def gateway_ns(self) -> int:
        return _ns(self.gateway_now())

    def note_kill(self) -> None:
        """A SIGKILL is about to be sent (for excusing what was not yet committed)."""
        self.kills.append(self.gateway_ns())

    async def _drive(self) -> None:
        then = self.clock.now()
        while True:
            await asyncio.sleep(STEP_EVERY)
            now = self.clock.now()
            try:
                self.scenario.step(now, (now - then).total_seconds())
                for (device, point), words in self.garbled.items():
                    self.devices[device].set_raw(point, words)  # type: ignore[attr-defined]
            except Exception as exc:  # the world must not freeze unseen
                self.problems.append(f"the scenario failed at {now:%m-%d %H:%M}: {exc!r}")
                raise
            then = now

    async def _publish(self) -> None:
        every = PASSAGE_EVERY / self.speed
        while True:
            await asyncio.sleep(every)
            self.passages.publish()

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            used = self.gateway.usage()
            if used is not None and self.gateway.pid is not None:
                self.samples.append(
                    Sample(time.monotonic() - self._t0, self.gateway.pid, used[0], used[1])
                )

    async def finish(self) -> None:
        """Stop the world's tasks, the gateway (cleanly) and the devices; the servers stay
        up for the checker."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.gateway.running:
            down = self.gateway_ns()
            code = await asyncio.to_thread(self.gateway.stop)
            self.downtimes.append((down, self.gateway_ns()))  # the last stop, like any other
            if code != 0:
                self.problems.append(f"the last stop: the gateway exited with {code}")
        await asyncio.to_thread(self.tailer.stop)
        self.passages.stop()
        self.watcher.stop()
        for sim in self.simulations:
            await sim.stop()
        await self.proxy.stop()

    def close(self) -> None:
        """Stop everything that still runs (also after a failure) and remove the mount."""
        gateway = getattr(self, "gateway", None)
        if gateway is not None and gateway.running:
            gateway.kill()
        for name in ("accepted", "mosquitto", "influxd"):
            part = getattr(self, name, None)
            if part is not None:
                part.close()
        if getattr(self, "mounted", None) is not None:
            subprocess.run(["umount", str(self.mounted)], check=False)


def _values(
    source: ModbusDevice, request: Request, answer: list[Any], zone: str | None
) -> tuple[ProducedValue, ...]:
    """The values one answer carries: (measurement, tags, field, value) of each point the
    request covers, decoded as the gateway decodes them (a value the gateway could not
    take, a sentinel or NaN, is left out, as the gateway leaves it out of its reading)."""
    profile = source.profile
    out = []
    for key in request.keys:
        point = profile.point(key)
        if point.measurement is None or point.field is None:
            continue
        offset = point.address - request.address
        value = decode_point(profile, point, answer[offset : offset + point.count])
        if isinstance(value, NoValue):
            continue
        tags = tuple(sorted(profile.tags_for(point, zone).items()))
        out.append((point.measurement, tags, point.field, value))
    return tuple(out)
