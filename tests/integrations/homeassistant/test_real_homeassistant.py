"""A real Home Assistant Core (``scripts/setup-homeassistant``) against a real gateway and a
simulated branch, both on a private Mosquitto. Home Assistant starts once for the module:
onboarded and given the MQTT integration through its REST API, as a person would through its
UI. Each test uses its own branch id, so tests do not see each other's devices.

Without the Home Assistant environment these tests skip, and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.core.schema import GATEWAY_DEVICE
from openbranch.edge.demo.servers import free_port
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.integrations.homeassistant import Entity, entities
from openbranch.integrations.homeassistant.profiles import profile_for
from tests.conftest import start_or_fail
from tests.integrations.homeassistant.homeassistant import HomeAssistant, ha_python
from tests.mqttwatch import retained
from tests.services import Mosquitto
from tests.support.waiting import until

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[3]
TZ = ZoneInfo("Europe/Copenhagen")
SPEED = 30.0  # gateway seconds per real second: polls (30 s) and engine steps once a second
UNAVAILABLE = "unavailable"
T = TypeVar("T")


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    server = start_or_fail(Mosquitto)
    yield server
    server.close()


@pytest.fixture(scope="module")
def ha_module(broker: Mosquitto) -> Iterator[HomeAssistant]:
    """Home Assistant, onboarded, with the MQTT integration on ``broker``: once a module."""
    ha = start_or_fail(lambda: HomeAssistant(ha_python()))
    try:
        ha.onboard()
        ha.add_mqtt(broker.host, broker.port)
        yield ha
    finally:
        ha.close()


@pytest.fixture
def home_assistant(ha_module: HomeAssistant) -> Iterator[HomeAssistant]:
    """The module's Home Assistant, running (a test that stopped it does not leave it down),
    and no warning or error of its MQTT integration (a refused payload or template)."""
    ha_module.start()
    yield ha_module
    assert not ha_module.problems(), ha_module.problems()


class JumpClock:
    """A scaled clock that a test can move forward (to the next opening-hours interval)."""

    def __init__(self, start: datetime) -> None:
        self._clock = ScaledClock(start=start, speed=SPEED)
        self._offset = timedelta()

    def now(self) -> datetime:
        return self._clock.now() + self._offset

    def monotonic(self) -> float:
        return self._clock.monotonic()  # a jump moves the wall clock only

    async def sleep(self, seconds: float) -> None:
        await self._clock.sleep(seconds)

    def jump(self, delta: timedelta) -> None:
        self._offset += delta


def _modbus(device_id: str, profile: str, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": device_id,
        "profile": profile,
        "transport": {"type": "modbus_tcp", "host": "127.0.0.1", "port": port, "unit_id": 1},
        "poll": {"default": 30, "energy": 30} if "sdm630" in profile else {"default": 30},
        **extra,
    }


def _mqtt(device_id: str, profile: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": device_id,
        "profile": profile,
        "transport": {"type": "mqtt", "topic": f"zigbee2mqtt/{device_id}"},
        **extra,
    }


def branch_config(
    broker: Mosquitto, tmp_path: Path, branch: str, devices: list[dict[str, Any]]
) -> GatewayConfig:
    interval = [
        {"start": "08:00", "end": "10:00", "mode": "self_service"},
        {"start": "10:00", "end": "17:00", "mode": "staffed"},
    ]
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    return GatewayConfig.model_validate(
        {
            "branch": {"id": branch, "name": f"Test {branch}", "timezone": str(TZ)},
            "mqtt": {"host": broker.host, "port": broker.port, "keepalive": 5},
            "store": {"path": str(tmp_path / f"{branch}.db")},
            "hours": {"weekly": dict.fromkeys(days, interval)},
            "devices": devices,
        }
    )


async def eventually(
    check: Callable[[], T | None], what: str, within: float = 30.0, every: float = 0.25
) -> T:
    """``check()`` (run in a thread: it calls Home Assistant) until it returns a value."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last is not None and last is not False:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"{what}: not within {within:g} s")


def entity_ids(ha: HomeAssistant, wanted: list[Entity]) -> dict[str, str] | None:
    """unique_id -> entity_id once every wanted entity is in Home Assistant's registry."""
    found = {e["unique_id"]: e["entity_id"] for e in ha.entities() if e["platform"] == "mqtt"}
    if any(e.unique_id not in found for e in wanted):
        return None
    return {e.unique_id: found[e.unique_id] for e in wanted}


def states_of(ha: HomeAssistant, ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    states = ha.states()
    return {uid: states.get(eid, {"state": None}) for uid, eid in ids.items()}


def retained_json(broker: Mosquitto, topic: str) -> Any:
    """The retained JSON on ``topic`` (None when there is none)."""
    raw = retained(broker, topic)
    return json.loads(raw) if raw else None


def test_branch_shows_up_follows_the_simulation_and_survives_a_restart_of_home_assistant(
    home_assistant: HomeAssistant, broker: Mosquitto, tmp_path: Path
) -> None:
    ha, branch = home_assistant, "ha-hasle"
    config = branch_config(
        broker,
        tmp_path,
        branch,
        [
            _modbus("main-meter", "eastron-sdm630", free_port(), name="Main meter"),
            _modbus("district-heat", "kamstrup-multical-603", free_port()),
            _modbus("entrance-door", "moxa-iologik-e1214", free_port()),
            _modbus("people-counter", "moxa-iologik-e1210-counter", free_port()),
            _modbus("lights", "lunatone-dali2-modbus", free_port()),
            _modbus("climate", "vaisala-gmw90", free_port(), zone="reading-room"),
            _mqtt("front-door", "aqara-door-contact"),
            _mqtt("help-button", "aqara-help-button"),
            _mqtt("entrance-counter", "xovis-pc-line-count"),
            _mqtt("staff-lock", "danalock-v3-zigbee"),
        ],
    )
    wanted = entities(config)
    by_key = {":".join(e.unique_id.split(":")[2:]): e for e in wanted}  # "device:entity"
    energy = by_key["main-meter:import_kwh_total"].unique_id
    present = by_key[f"{GATEWAY_DEVICE}:{schema.OCCUPANCY.name}"].unique_id
    mode = by_key[f"{GATEWAY_DEVICE}:{schema.BRANCH_MODE.name}"].unique_id
    status_id = by_key[f"{GATEWAY_DEVICE}:status"].unique_id
    registry = default_registry()
    outbox = open_outbox(config)
    clock = JumpClock(datetime(2026, 12, 2, 9, 30, tzinfo=TZ))  # a Wednesday: self-service
    gateway = Gateway(config=config, registry=registry, clock=clock, outbox=outbox)
    simulations = registry.simulate(config.devices, mqtt=config.mqtt)
    sims = {k: v for s in simulations for k, v in s.devices.items()}
    state_topic = f"openbranch/{branch}/main-meter/state"

    async def main() -> None:
        for simulation in simulations:
            await simulation.start()
        sims["main-meter"].set("import_kwh", 1000.0)
        sims["people-counter"].set("entered", 12)
        sims["people-counter"].set("exited", 5)
        stop = asyncio.Event()
        run = asyncio.create_task(gateway.run(stop))
        try:
            await until(lambda: gateway.mqtt is not None, within=5, what="the MQTT session")
            assert gateway.mqtt is not None and await gateway.mqtt.wait_subscribed()
            sims["front-door"].set("open", True)
            sims["help-button"].set("pressed", True)
            sims["entrance-counter"].set("entered", 3)
            sims["entrance-counter"].set("exited", 3)
            sims["staff-lock"].set("locked", True)

            # Every device appears as a device with its entities.
            ids = await eventually(lambda: entity_ids(ha, wanted), "every entity registered")
            areas = {a["area_id"]: a["name"] for a in ha.ws("config/area_registry/list")}
            devices = {
                ident[1]: d
                for d in ha.devices()
                for ident in d["identifiers"]
                if ident[0] == "mqtt"
            }
            for device in config.devices:
                got = devices.get(f"openbranch:{branch}:{device.id}")
                assert got is not None, f"{device.id} is not a Home Assistant device"
                assert areas.get(got["area_id"]) == config.branch.name, device.id
                assert got["model"] == profile_for(device).model, device.id
            by_device = {e["entity_id"]: e["device_id"] for e in ha.entities()}
            for entity in wanted:
                ident = entity.payload["device"]["identifiers"][0]
                assert by_device[ids[entity.unique_id]] == devices[ident]["id"], entity.unique_id

            await eventually(
                lambda: all(s["state"] != UNAVAILABLE for s in states_of(ha, ids).values()),
                "every entity available",
            )
            attributes = states_of(ha, ids)[energy]["attributes"]
            assert attributes["device_class"] == "energy"
            assert attributes["state_class"] == "total_increasing"
            assert attributes["unit_of_measurement"] == "kWh"
            # A meter reset: the register falls to 5; the entity shows the corrected total.
            await eventually(
                lambda: states_of(ha, ids)[energy]["state"] == "1000.0", "energy 1000 kWh"
            )
            sims["main-meter"].set("import_kwh", 5.0)
            await eventually(
                lambda: states_of(ha, ids)[energy]["state"] == "1005.0", "corrected total"
            )
            published = await asyncio.to_thread(retained_json, broker, state_topic)
            meter = published[schema.ENERGY.name]
            assert meter[schema.ENERGY_TOTAL.key] == 1005.0  # the gateway's corrected total
            assert meter[schema.ENERGY_REGISTER.key] == 5.0

            # People present and the branch mode follow the simulation.
            await eventually(lambda: states_of(ha, ids)[present]["state"] == "7", "7 present")
            sims["people-counter"].set("entered", 20)
            sims["people-counter"].set("exited", 8)
            await eventually(lambda: states_of(ha, ids)[present]["state"] == "12", "12 present")
            await eventually(
                lambda: states_of(ha, ids)[mode]["state"] == "self_service", "self-service"
            )
            clock.jump(timedelta(minutes=45))  # 10:15: staffed
            await eventually(lambda: states_of(ha, ids)[mode]["state"] == "staffed", "staffed")

            # Home Assistant restarts; the gateway keeps running and everything comes back.
            client_id = gateway.mqtt.client_id if gateway.mqtt else None
            await asyncio.to_thread(ha.stop)
            sims["people-counter"].set("entered", 25)  # while Home Assistant is away
            await asyncio.to_thread(ha.start)
            await eventually(
                lambda: all(s["state"] != UNAVAILABLE for s in states_of(ha, ids).values()),
                "every entity available after the restart",
                within=60,
            )
            await eventually(
                lambda: states_of(ha, ids)[present]["state"] == "17", "17 present after restart"
            )
            assert states_of(ha, ids)[energy]["state"] == "1005.0"
            assert not run.done()
            assert gateway.mqtt is not None and gateway.mqtt.client_id == client_id

            # The gateway stops: its entities become unavailable at once (its status topic).
            stop.set()
            await run
            stopped = time.monotonic()
            await eventually(
                lambda: all(
                    s["state"] == UNAVAILABLE
                    for uid, s in states_of(ha, ids).items()
                    if uid != status_id
                ),
                "every entity unavailable",
                within=config.mqtt.keepalive if config.mqtt else 5,
            )
            assert time.monotonic() - stopped < 5
            status = states_of(ha, ids)[status_id]["state"]
            assert status == "off"  # the gateway's connectivity sensor says so, available
        finally:
            stop.set()
            await run
            for simulation in simulations:
                await simulation.stop()

    try:
        asyncio.run(main())
    finally:
        outbox.close()


def test_hung_gateway_is_unavailable_within_the_keepalive_window(
    home_assistant: HomeAssistant, broker: Mosquitto, tmp_path: Path
) -> None:
    ha, branch, keepalive = home_assistant, "ha-crash", 2
    config = branch_config(broker, tmp_path, branch, [_mqtt("front-door", "aqara-door-contact")])
    data = config.model_dump(mode="json")
    data["mqtt"]["keepalive"] = keepalive
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    wanted = [e for e in entities(config) if ":front-door:" in e.unique_id]
    proc = subprocess.Popen(
        [sys.executable, "-m", "openbranch.edge.cli", "gateway", "run", str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def main() -> tuple[float, float]:
        ids = await eventually(lambda: entity_ids(ha, wanted), "door entity registered")
        door_state = lambda: states_of(ha, ids)[wanted[0].unique_id]["state"]  # noqa: E731
        will: list[float] = []  # when the broker sent the gateway's last will
        online = threading.Event()  # the retained birth message, once subscribed

        def status(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
            if message.payload == b"offline":
                will.append(time.monotonic())
            elif message.payload == b"online":
                online.set()

        door = mqtt.Client(CallbackAPIVersion.VERSION2)
        door.on_message = status
        door.connect(broker.host, broker.port)
        door.loop_start()
        try:
            deadline = time.monotonic() + 30
            while await asyncio.to_thread(door_state) != "on":
                assert time.monotonic() < deadline, "the door never showed open"
                door.publish("zigbee2mqtt/front-door", b'{"contact": false}').wait_for_publish(5)
                await asyncio.sleep(0.5)
            door.subscribe(f"openbranch/{branch}/status", qos=1)
            assert await asyncio.to_thread(online.wait, 5), "no retained birth message"
            assert will == []
            # Frozen, its TCP connection open (a hung gateway, a cut network): only the
            # missing keep-alive tells the broker, which then sends the gateway's last will.
            proc.send_signal(signal.SIGSTOP)
            frozen = time.monotonic()
            await eventually(
                lambda: door_state() == UNAVAILABLE,
                "door unavailable after the gateway froze",
                within=1.5 * keepalive + 10,
                every=0.1,
            )
            seen = time.monotonic()
        finally:
            door.loop_stop()
            door.disconnect()
            door.on_message = None
        assert will, "the broker never sent the last will"
        return will[0] - frozen, seen - will[0]

    try:
        broker_gave_up, ha_followed = asyncio.run(main())
    finally:
        proc.kill()  # SIGKILL ends a stopped process too
        proc.wait()
    print(  # -s shows it
        f"keep-alive {keepalive} s: last will {broker_gave_up:.2f} s after the freeze,"
        f" Home Assistant unavailable {ha_followed:.2f} s after the will"
    )
    # Not at once (no FIN came: it is the keep-alive); the MQTT spec says 1.5 keep-alives
    # after the last packet, and Mosquitto 2.0.11 checks late (measured 3.7-7.7 s for 2 s).
    assert 0.5 <= broker_gave_up <= 1.5 * keepalive + 6.0, broker_gave_up
    assert ha_followed <= 1.0, ha_followed  # Home Assistant follows the gateway's status


def test_device_removed_from_the_config_leaves_home_assistant(
    home_assistant: HomeAssistant, broker: Mosquitto, tmp_path: Path
) -> None:
    ha, branch = home_assistant, "ha-removal"
    both = [_mqtt("front-door", "aqara-door-contact"), _mqtt("help-button", "aqara-help-button")]
    before = branch_config(broker, tmp_path, branch, both)
    after = branch_config(broker, tmp_path, branch, both[:1])

    async def run_gateway(config: GatewayConfig, until: Callable[[], Awaitable[object]]) -> None:
        outbox = open_outbox(config)
        gateway = Gateway(
            config=config,
            registry=default_registry(),
            clock=JumpClock(datetime(2026, 12, 2, 12, 0, tzinfo=TZ)),
            outbox=outbox,
        )
        stop = asyncio.Event()
        run = asyncio.create_task(gateway.run(stop))
        try:
            await until()
        finally:
            stop.set()
            await run
            outbox.close()

    def devices() -> set[str]:
        return {
            ident[1]
            for d in ha.devices()
            for ident in d["identifiers"]
            if ident[0] == "mqtt" and ident[1].startswith(f"openbranch:{branch}:")
        }

    help_ids = {e.unique_id for e in entities(before) if ":help-button:" in e.unique_id}
    assert help_ids

    async def main() -> None:
        await run_gateway(
            before,
            lambda: eventually(
                lambda: (
                    devices()
                    >= {f"openbranch:{branch}:front-door", f"openbranch:{branch}:help-button"}
                ),
                "both devices in Home Assistant",
            ),
        )

        def gone() -> bool:
            registered = {e["unique_id"] for e in ha.entities()}
            return devices() == {f"openbranch:{branch}:front-door"} and not help_ids & registered

        await run_gateway(after, lambda: eventually(gone, "the removed device gone"))

    asyncio.run(main())
    assert f"openbranch:{branch}:front-door" in devices()  # the one still configured stays
