"""A branch's evening on an accelerated clock, against simulated Modbus devices: the gateway
runs the engine and the reconciler, and the devices follow (or do not)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from tests.services import free_port

CPH = ZoneInfo("Europe/Copenhagen")


def branch(tmp_path: Path) -> GatewayConfig:
    port = free_port()

    def modbus(unit: int) -> dict[str, Any]:
        return {
            "type": "modbus_tcp",
            "host": "127.0.0.1",
            "port": port,
            "unit_id": unit,
            "timeout": 0.5,
        }

    return GatewayConfig.model_validate(
        {
            "branch": {"id": "evening", "name": "Evening test branch"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "hours": {
                "weekly": {"wed": [{"start": "08:00", "end": "22:00", "mode": "self_service"}]}
            },
            "closing": {"grace": 15, "lights_off_after_empty": 5, "occupancy_cap": 50},
            "devices": [
                {
                    "id": "door",
                    "profile": "moxa-iologik-e1214",
                    "transport": modbus(1),
                    "poll": {"default": "10s"},
                },
                {
                    "id": "counter",
                    "profile": "moxa-iologik-e1210-counter",
                    "transport": modbus(2),
                    "poll": {"default": "10s"},
                },
                {
                    "id": "lights",
                    "profile": "lunatone-dali2-modbus",
                    "transport": modbus(3),
                    "poll": {"default": "30s"},
                },
            ],
            "safety": {"fire_alarm_device": "door"},
            "actuators": [
                {
                    "class": "door",
                    "device": "door",
                    "point": "free_passage_relay",
                    "values": {
                        "free": True,
                        "access_control": False,
                        "locked": False,
                        "exit_only": False,
                    },
                },
                {
                    "class": "door",
                    "device": "door",
                    "point": "reader_block_relay",
                    "values": {
                        "free": False,
                        "access_control": False,
                        "locked": False,
                        "exit_only": True,
                    },
                },
                {
                    "class": "alarm",
                    "device": "door",
                    "point": "alarm_arm_relay",
                    "values": {"armed": True, "disarmed": False},
                },
                {"class": "lights", "device": "lights", "point": "target_g0"},
            ],
        }
    )


def run_evening(
    tmp_path: Path,
    script: Callable[[datetime, dict[str, Any]], None],
    *,
    start: datetime,
    minutes: float,
    prepare: Callable[[dict[str, Any]], None] = lambda _d: None,
) -> tuple[Gateway, list[tuple[datetime, bool, float]]]:
    """Run the gateway from ``start`` for ``minutes`` of branch time at 300x."""
    config = branch(tmp_path)
    registry = default_registry()
    clock = ScaledClock(start=start, speed=300)
    outbox = open_outbox(config)
    gateway = Gateway(config=config, registry=registry, clock=clock, outbox=outbox)
    (sim,) = registry.simulate(config.devices)
    devices: dict[str, Any] = dict(sim.devices)
    samples: list[tuple[datetime, bool, float]] = []

    async def main() -> None:
        await sim.start()
        prepare(devices)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        end = minutes * 60 / 300
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while loop.time() - t0 < end:
            now = clock.now()
            script(now, devices)
            samples.append(
                (now, devices["door"].get("alarm_arm_relay"), devices["lights"].get("target_g0"))
            )
            await asyncio.sleep(0.02)
        stop.set()
        await task
        await sim.stop()

    asyncio.run(main())
    return gateway, samples


def at(h: int, m: int) -> datetime:
    return datetime(2026, 11, 25, h, m, tzinfo=CPH)


def people(devices: dict[str, Any], inside: int) -> None:
    """``inside`` people in the branch, as a real counter gets there: people come in (entered
    counts up) or leave (exited counts up); its totals never go down."""
    counter = devices["counter"]
    entered, exited = counter.get("entered") or 100, counter.get("exited") or 100
    if inside > entered - exited:
        entered = exited + inside
    else:
        exited = entered - inside
    counter.set("entered", entered)
    counter.set("exited", exited)


def alerts(gateway: Gateway) -> list[str]:
    return [e.line for e in gateway.outbox.lines(measurement="alert")]


def test_alarm_armed_only_after_the_last_visitor_leaves(tmp_path: Path) -> None:
    leaves = at(22, 20)

    def script(now: datetime, devices: dict[str, Any]) -> None:
        people(devices, 2 if now < leaves else 0)

    gateway, samples = run_evening(tmp_path, script, start=at(21, 50), minutes=45)
    armed = [t for t, alarm, _ in samples if alarm]
    assert armed, "the alarm was never armed"
    assert min(armed) >= leaves  # never while someone was inside
    assert all(not alarm for t, alarm, _ in samples if t < leaves)
    straggler = [
        line for line in alerts(gateway) if "kind=not_empty" in line and "active=true" in line
    ]
    assert len(straggler) == 1  # one alert, raised after the grace period
    modes = [e.line for e in gateway.outbox.lines(measurement="branch_mode")]
    assert any('mode="self_service"' in m for m in modes)
    assert any('mode="closed"' in m for m in modes)
    audit = [e.line for e in gateway.outbox.lines(measurement="audit")]
    assert any("alarm_arm_relay := True" in line for line in audit)
    assert sum("The library closes in" in line for line in audit) == 2  # 21:50 and 21:55


def test_fire_alarm_goes_to_emergency_lights_full_never_arms(tmp_path: Path) -> None:
    def script(now: datetime, devices: dict[str, Any]) -> None:
        people(devices, 0)
        devices["door"].set("fire_alarm", at(21, 55) <= now < at(22, 5))

    gateway, samples = run_evening(tmp_path, script, start=at(21, 50), minutes=30)
    assert not any(alarm for _, alarm, _ in samples)
    late = [level for t, _, level in samples if t >= at(22, 10)]
    assert late
    assert all(abs(level - 100.0) < 0.5 for level in late[3:])  # full on, after the input too
    modes = [e.line for e in gateway.outbox.lines(measurement="branch_mode")]
    assert any('mode="emergency"' in m for m in modes)


def test_a_door_that_does_not_follow_raises_an_alert(tmp_path: Path) -> None:
    def script(_now: datetime, devices: dict[str, Any]) -> None:
        people(devices, 3)

    def jam(devices: dict[str, Any]) -> None:
        devices["door"].set("alarm_arm_relay", True)  # armed from the night before...
        devices["door"].stick("alarm_arm_relay")  # ...and the relay does not release

    gateway, _ = run_evening(tmp_path, script, start=at(12, 0), minutes=10, prepare=jam)
    raised = [line for line in alerts(gateway) if "actuator:door.alarm_arm_relay" in line]
    assert raised
    assert "active=true" in raised[0]
    assert "does not follow False" in raised[0]


def test_restart_mid_self_service_reasserts_and_replays_no_announcement(tmp_path: Path) -> None:
    def script(_now: datetime, devices: dict[str, Any]) -> None:
        people(devices, 4)

    def power_cut(devices: dict[str, Any]) -> None:
        devices["door"].set("alarm_arm_relay", True)  # state the devices came back in
        devices["lights"].set("target_g0", 0.0)

    gateway, samples = run_evening(tmp_path, script, start=at(21, 52), minutes=5, prepare=power_cut)
    assert samples[-1][1] is False  # disarmed again: self-service
    assert abs(samples[-1][2] - 80.0) < 0.5  # lights back to the self-service level (DALI steps)
    audit = [e.line for e in gateway.outbox.lines(measurement="audit")]
    said = [line for line in audit if "The library closes in" in line]
    assert len(said) == 1  # 21:55 is made; 21:45 and 21:50 were missed and are not replayed
    assert "5 minutes" in said[0]


def test_the_cap_turns_the_door_exit_only(tmp_path: Path) -> None:
    blocked: list[tuple[datetime, bool]] = []

    def script(now: datetime, devices: dict[str, Any]) -> None:
        people(devices, 60 if at(20, 10) <= now < at(20, 25) else 30)
        blocked.append((now, devices["door"].get("reader_block_relay")))

    gateway, _ = run_evening(tmp_path, script, start=at(20, 0), minutes=40)
    during = [b for t, b in blocked if at(20, 13) <= t < at(20, 25)]
    after = [b for t, b in blocked if t >= at(20, 30)]
    assert during
    assert all(during)  # exit only while at or over the cap
    assert after
    assert not any(after)  # card access again below the cap
    cap = [line for line in alerts(gateway) if "kind=occupancy_cap" in line]
    assert ["active=true" in line for line in cap] == [True, False]
