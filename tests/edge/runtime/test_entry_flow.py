"""Self-service entry end to end (issue 15): a card reader on real Mosquitto, the library system
as pysip2's ACS on loopback (asked by the gateway's own SIP2 client), a door lock and a people
counter simulated on MQTT, and every reading delivered to a real influxd.

One evening at the front door: a patron is admitted (the lock's unlock pulse, the reader shows
it), a lost card is refused, three wrong PINs lock the card out (the right PIN is then refused
without asking the library system), two people pass on one admission (tailgating, raised to
Home Assistant's hook and cleared), the library system goes away (library_system_down
raised; by the default offline policy the admitted card is refused, by ``recently_admitted``
it is let in and the lost card is not) and comes back. Then the written data is searched
for the card numbers and PINs used: the outbox file, every series in influxd, every MQTT
message but the reader's own presentations, and the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.reading import Reading
from openbranch.edge.core.registry import default_registry
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.integrations.homeassistant import alert_entity
from openbranch.integrations.mqtt.simulator import SimulatedMqttDevice
from tests.integrations.sip2.acs import LOGIN_PASSWORD, LOGIN_USER, AcsProcess
from tests.mqttwatch import Watcher, retained_all
from tests.services import Influxd, Mosquitto
from tests.support.waiting import until

CPH = ZoneInfo("Europe/Copenhagen")
START = datetime(2026, 12, 2, 19, 0, tzinfo=CPH)  # a Wednesday evening, self-service
READER = "esphome/front-reader"
GOOD, LOST, OVERDUE = "2200000000017", "2200000000025", "2200000000041"
SECRETS = (GOOD, LOST, OVERDUE, "1234", "4321", "2222", "0000")


@pytest.fixture
def acs() -> Iterator[AcsProcess]:
    server = AcsProcess()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sip2_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTRY_TEST_SIP2_USER", LOGIN_USER)
    monkeypatch.setenv("ENTRY_TEST_SIP2_PASSWORD", LOGIN_PASSWORD)


def config(  # noqa: PLR0917 - the servers of the test
    tmp_path: Path, mosquitto: Mosquitto, influx: str, db: str, acs_port: int, policy: str
) -> GatewayConfig:
    return GatewayConfig.model_validate(
        {
            "branch": {"id": "entry1", "name": "Entry test branch"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "sinks": [
                {"type": "influxdb_v1", "url": influx, "database": db, "flush_interval": 0.05}
            ],
            "hours": {
                "weekly": {"wed": [{"start": "08:00", "end": "22:00", "mode": "self_service"}]}
            },
            "devices": [
                {
                    "id": "reader",
                    "profile": "esphome-wiegand-reader",
                    "transport": {"type": "mqtt", "topic": READER},
                },
                {
                    "id": "door",
                    "profile": "danalock-v3-zigbee",
                    "transport": {"type": "mqtt", "topic": "zigbee2mqtt/front-door"},
                },
                {
                    "id": "counter",
                    "profile": "xovis-pc-line-count",
                    "transport": {"type": "mqtt", "topic": "xovis/front/counts"},
                },
            ],
            "library_system": {
                "type": "sip2",
                "host": "127.0.0.1",
                "port": acs_port,
                "institution_id": "DK-761500",
                "login_user": {"env": "ENTRY_TEST_SIP2_USER"},
                "login_password": {"env": "ENTRY_TEST_SIP2_PASSWORD"},
                "timeout": 1.0,
                "reconnect_max": 0.5,
            },
            "entry": {
                "readers": [
                    {
                        "reader": "reader",
                        "door": "door",
                        "counter": "counter",
                        "unlock_point": "locked",
                        "unlock_value": False,
                        "relock_value": True,
                    }
                ],
                "unlock_s": 2.0,
                "lookup_timeout_s": 2.0,
                "tailgating": {"window_s": 2.0, "severity": "warning"},
                "offline": {"policy": policy, "days": 14},
            },
        }
    )


@pytest.mark.usefixtures("sip2_login")
@pytest.mark.parametrize("policy", ["refuse_all", "recently_admitted"])
def test_an_evening_at_the_front_door(  # noqa: PLR0917 - fixtures
    policy: str,
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxd: Influxd,
    influx_db: str,
    acs: AcsProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = config(tmp_path, mosquitto, influxd.url, influx_db, acs.port, policy)
    registry = default_registry()
    clock = ScaledClock(start=START, speed=1)
    outbox = open_outbox(cfg)
    old = {"kind": "entry", "text": "reader: card 0f0f admitted (admitted)"}
    outbox.append(  # an entry record from 31 days ago: past the retention of 30 days
        [
            Reading(
                branch="entry1",
                device=schema.GATEWAY_DEVICE,
                measurement=schema.AUDIT,
                fields={schema.AUDIT_MESSAGE.key: old["text"]},
                tags={schema.Tag.KIND.value: old["kind"]},
                time=START - timedelta(days=31),
            )
        ],
        audit=True,
    )
    gateway = Gateway(config=cfg, registry=registry, clock=clock, outbox=outbox)
    heard: list[str] = []  # what Home Assistant's alert entities hear
    gateway.journal.raised.append(heard.append)
    (sim,) = registry.simulate(cfg.devices, mqtt=cfg.mqtt)
    lock, counter = sim.devices["door"], sim.devices["counter"]
    assert isinstance(counter, SimulatedMqttDevice)
    watcher = Watcher(mosquitto.host, mosquitto.port, "#")
    entry = gateway.entry
    assert entry is not None

    def answers() -> list[dict[str, object]]:
        return [json.loads(p) for p in watcher.payloads(f"{READER}/display")]

    def counts(entered: int) -> None:
        line = {"id": 0, "name": "Entrance", "fw": entered, "bw": 4}
        counter.publish_raw("xovis/front/counts", json.dumps({"lines": [line]}).encode())

    async def present(card: str, pin: str | None) -> dict[str, object]:
        before = len(answers())
        body: dict[str, str] = {"card": card} | ({"pin": pin} if pin else {})
        watcher.publish(f"{READER}/presented", json.dumps(body).encode())
        await until(lambda: len(answers()) > before, 10, f"an answer at the reader ({before})")
        return answers()[before]

    async def main() -> None:
        await sim.start()
        lock.set("locked", True)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            await until(lambda: gateway.mqtt is not None and gateway.mqtt.connected, 10, "mqtt")
            await until(lambda: gateway.engine.last_decision is not None, 10, "the engine")
            for _attempt in range(50):  # until the gateway's subscription is in place
                counts(10)
                with contextlib.suppress(AssertionError):
                    await until(lambda: entry._tailgate["door"].entered == 10, 0.2)
                    break
            assert entry._tailgate["door"].entered == 10

            first = await present(GOOD, "1234")
            assert (first["admit"], first["reason"]) == (True, "admitted")
            assert (first["da"], first["en"]) == ("Velkommen", "Welcome")
            await until(lambda: lock.get("locked") is False, 5, "the unlock pulse")
            await until(lambda: lock.get("locked") is True, 10, "relocked after the pulse")
            counts(11)  # the patron walks in: no tailgating
            await until(lambda: entry._tailgate["door"].entered == 11, 10, "the counter heard")

            lost = await present(LOST, "4321")
            assert (lost["admit"], lost["reason"]) == (False, "card_lost")
            assert lost["da"] == "Kortet er meldt bortkommet"
            assert lost["en"] == "The card is reported lost"

            again = await present(GOOD, "1234")
            assert again["admit"] is True
            counts(13)  # two people on one admission
            await until(lambda: "tailgating:door" in gateway.journal.active, 10, "tailgating")
            assert "tailgating:door" in heard
            await until(lambda: "tailgating:door" not in gateway.journal.active, 10, "cleared")

            for _ in range(3):
                wrong = await present(OVERDUE, "0000")
                assert (wrong["admit"], wrong["reason"]) == (False, "wrong_pin")
            acs.stop()  # locked out: decided without the library system
            locked = await present(OVERDUE, "2222")  # the right PIN
            assert (locked["admit"], locked["reason"]) == (False, "locked_out")
            assert "library_system_down" not in gateway.journal.active

            offline = await present(GOOD, "1234")
            assert "library_system_down" in gateway.journal.active
            if policy == "refuse_all":
                assert (offline["admit"], offline["reason"]) == (False, "offline")
            else:  # admitted online before; the lost card was refused online
                assert (offline["admit"], offline["reason"]) == (True, "offline_admitted")
                lost_offline = await present(LOST, "4321")
                assert (lost_offline["admit"], lost_offline["reason"]) == (False, "offline")
            acs.start()  # on the same port: the client reconnects at its next lookup
            for _attempt in range(100):  # each attempt waits for its answer
                if (await present(GOOD, "1234"))["reason"] == "admitted":
                    break
            assert "library_system_down" not in gateway.journal.active
            await until(lambda: outbox.depth(gateway.drainers[0].name) == 0, 20, "delivered")
        finally:
            stop.set()
            await task
            await sim.stop()

    asyncio.run(main())
    watcher.sync()
    seen = [m for m in watcher.messages if not m.topic.endswith("/presented")]
    retained = retained_all(mosquitto, "#")
    kept = [e.line for e in outbox.lines(measurement=schema.AUDIT.name) if "card 0f0f" in e.line]
    outbox.close()
    assert kept == []  # the housekeeping deleted the record past retention

    # the numbers: this hour's counts in self-service mode
    rows = influxd.rows(
        "SELECT admitted, refused FROM admission WHERE mode = 'self_service'", influx_db
    )
    assert not [kind for kind in heard if kind.startswith("unlock:")]  # every pulse obeyed
    tailgating = alert_entity(cfg, "tailgating:door")  # Home Assistant's binary sensor
    assert json.loads(retained[tailgating.topic])["device_class"] == "problem"
    (row,) = rows  # one hour, written again with each decision
    if policy == "refuse_all":  # admitted: the first, again, and when it is back
        assert row[1] == 3
    else:  # and offline, once or more while the client reconnected
        assert row[1] >= 4
    assert row[2] >= 6  # lost, 3 wrong PINs, locked out, offline (and retries while it came back)
    audit = influxd.rows("SELECT message FROM audit WHERE kind = 'entry'", influx_db)
    assert any("admitted (admitted)" in r[1] for r in audit)
    assert any("refused (locked_out)" in r[1] for r in audit)

    # privacy: no card number or PIN anywhere it was written
    written = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    everything = [
        json.dumps(influxd.rows(f'SELECT * FROM "{m[0]}"', influx_db))
        for m in influxd.rows("SHOW MEASUREMENTS", influx_db)
    ]
    mqtt_text = [m.payload.decode(errors="replace") for m in seen] + [
        v.decode(errors="replace") for v in retained.values()
    ]
    for secret in (GOOD, LOST, OVERDUE):
        assert secret.encode() not in written, f"{secret} in the outbox files"
        assert not any(secret in text for text in everything), f"{secret} in influxd"
        assert not any(secret in text for text in mqtt_text), f"{secret} on MQTT"
        assert secret not in caplog.text, f"{secret} in the log"
    for pin in ("1234", "4321", "2222", "0000"):
        assert not any(f'"{pin}"' in text for text in mqtt_text), f"PIN {pin} on MQTT"
