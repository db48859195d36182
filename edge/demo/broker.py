"""An in-process MQTT broker (amqtt, MQTT 3.1.1) for the demo when no broker is configured.

Production branches use Mosquitto (configured by provisioning); this only lets the demo run
with nothing installed. It listens on a free loopback port, allows anonymous clients, and runs
on its own thread and event loop, so a busy gateway loop can never stall the broker (nor the
other way round)::

    async with EmbeddedBroker() as broker:
        config = MqttConfig(host=broker.host, port=broker.port, protocol="3.1.1")

amqtt does not answer MQTT v5 CONNECTs; the gateway's session falls back to 3.1.1 by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker

__all__ = ["EmbeddedBroker"]


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        if port is None:
            with socket.socket() as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="embedded-mqtt-broker", daemon=True
        )
        self._broker: Broker | None = None

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    async def _on_broker_loop(self, coro: Coroutine[Any, Any, None]) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _start(self) -> None:
        # Built on its own loop: amqtt binds futures to the loop current at construction.
        self._broker = Broker(config=self._config())
        await self._broker.start()

    async def _stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:  # amqtt can leave its per-message tasks behind
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def start(self) -> None:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._thread.start()
        await self._on_broker_loop(self._start())

    async def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):  # a broker that failed to start stops too
            await self._on_broker_loop(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        self._loop.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.stop()
