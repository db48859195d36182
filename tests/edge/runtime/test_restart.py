"""What a person set survives a restart: an override until it ends, an emergency until a person
clears it — after a clean stop and after SIGKILL (issue 12 point 5)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.core.schedule import Mode
from openbranch.edge.hours.control import sign
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.edge.telemetry.outbox import Outbox, OutboxNotReady
from tests.services import Mosquitto
from tests.support.waiting import until

KEY = "k3y-for-restart-tests"
ROOT = Path(__file__).resolve().parents[3]
OPEN_ALL_WEEK = {
    day: [{"start": "00:00", "end": "24:00", "mode": "self_service"}]
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}


def control(action: str, *, now: datetime, **extra: str) -> bytes:
    message = {
        "id": f"{action}-{now.timestamp()}",
        "issued_at": now.isoformat(),
        "expires_at": (now + timedelta(minutes=5)).isoformat(),
        "action": action,
        "who": "ops:test",
        "reason": "restart test",
        **extra,
    }
    return json.dumps(sign(message, KEY.encode())).encode()


def config_dict(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {
        "branch": {"id": "rs", "name": "Restart test"},
        "store": {"path": str(tmp_path / "outbox.db")},
        "hours": {"weekly": OPEN_ALL_WEEK},
        "control": {"key": {"env": "OB_TEST_RESTART_KEY"}},
        **extra,
    }


def modes(outbox: Outbox) -> list[str]:
    """Every mode change the gateway audited, in order (``start -> x`` at each start)."""
    return [
        e.line.split('message="')[1].split('"')[0]
        for e in outbox.lines(measurement=schema.AUDIT.name)
        if "kind=mode" in e.line
    ]


async def run_until(gateway: Gateway, done: object) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    await until(done, within=20, what="the gateway got there")  # type: ignore[arg-type]
    stop.set()
    await task


def test_an_override_and_an_emergency_survive_a_clean_restart(
    tmp_path: Path, monkeypatch: object
) -> None:
    os.environ["OB_TEST_RESTART_KEY"] = KEY
    config = GatewayConfig.model_validate(config_dict(tmp_path))
    now = datetime.now(UTC)

    def gateway() -> Gateway:
        return Gateway(
            config=config,
            registry=default_registry(),
            clock=ScaledClock(start=datetime.now(UTC), speed=1.0),  # time goes on
            outbox=open_outbox(config),
            extensions=[],
        )

    def mode_is(g: Gateway, mode: Mode) -> bool:
        return g.engine.last_decision is not None and g.engine.last_decision.mode is mode

    async def first() -> None:
        g = gateway()
        stop = asyncio.Event()
        task = asyncio.create_task(g.run(stop))
        await until(lambda: g.engine.last_decision is not None, what="a first step")
        until_end = (now + timedelta(hours=1)).isoformat()
        g.desk.on_message(
            "ctl", control("override", now=now, mode="closed", until=until_end), False
        )
        await until(lambda: mode_is(g, Mode.CLOSED), what="the override applied")
        g.engine.engine.restore_emergency(now)  # as a fire alarm input would have latched it
        g.engine.request_step()
        await until(lambda: mode_is(g, Mode.EMERGENCY), what="the emergency")
        stop.set()
        await task
        g.outbox.close()

    async def second() -> Gateway:
        g = gateway()
        stop = asyncio.Event()
        task = asyncio.create_task(g.run(stop))
        await until(lambda: g.engine.last_decision is not None, what="a first step")
        assert g.engine.last_decision is not None
        assert g.engine.last_decision.mode is Mode.EMERGENCY  # no fire input now: restored
        g.desk.on_message("ctl", control("clear_emergency", now=now), False)
        await until(lambda: mode_is(g, Mode.CLOSED), what="back to the override")
        stop.set()
        await task
        g.outbox.close()
        return g

    asyncio.run(first())
    asyncio.run(second())
    store = open_outbox(config, read_only=True)
    assert modes(store) == [
        "start -> self_service",
        "self_service -> closed",
        "closed -> emergency",
        "start -> emergency",
        "emergency -> closed",  # the override is still in force after the restart
    ]
    store.close()


def _write_config(tmp_path: Path, mosquitto: Mosquitto) -> Path:
    path = tmp_path / "gateway.yaml"
    mqtt = {"host": mosquitto.host, "port": mosquitto.port}
    path.write_text(yaml.safe_dump(config_dict(tmp_path, mqtt=mqtt)), encoding="utf-8")
    return path


def _gateway_process(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OB_TEST_RESTART_KEY": KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "openbranch.edge.cli", "gateway", "run", str(path)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _audited(path: Path, config: GatewayConfig) -> Iterator[str]:
    try:
        store = open_outbox(config, read_only=True)
    except (FileNotFoundError, OutboxNotReady):  # the gateway has not made its store yet
        return
    try:
        yield from modes(store)
    finally:
        store.close()


def test_an_override_survives_sigkill(tmp_path: Path, mosquitto: Mosquitto) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    path = _write_config(tmp_path, mosquitto)
    config = GatewayConfig.model_validate(config_dict(tmp_path))
    first = _gateway_process(path)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="restart-test")
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    try:

        async def main() -> None:
            await until(
                lambda: list(_audited(path, config)) == ["start -> self_service"],
                within=30,
                what="the first gateway's start",
            )
            # The broker forwards only to a subscription it has: send a fresh command each
            # second until one is applied (the gateway may not have subscribed yet).
            for _ in range(30):
                now = datetime.now(UTC)
                until_end = (now + timedelta(hours=1)).isoformat()
                payload = control("override", now=now, mode="closed", until=until_end)
                publisher.publish("openbranch/rs/control", payload, qos=1).wait_for_publish(5)
                with contextlib.suppress(AssertionError):
                    await until(
                        lambda: list(_audited(path, config))[-1:] == ["self_service -> closed"],
                        within=1,
                    )
                    return
            raise AssertionError("the override was never applied")

        asyncio.run(main())
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        second = _gateway_process(path)
        try:
            asyncio.run(
                until(
                    lambda: len(list(_audited(path, config))) == 3,
                    within=30,
                    what="the second gateway's start",
                )
            )
        finally:
            second.send_signal(signal.SIGTERM)
            out, _ = second.communicate(timeout=30)
        assert list(_audited(path, config)) == [
            "start -> self_service",
            "self_service -> closed",
            "start -> closed",  # after SIGKILL, the override is still in force
        ], out
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=10)
