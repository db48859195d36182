"""An in-process MQTT broker (amqtt, MQTT 3.1.1) for the demo when no broker is configured.

Production branches use Mosquitto (configured by provisioning); this only lets the demo run
with nothing installed. It listens on a free loopback port, allows anonymous clients, and runs
on its own thread and event loop, so a busy gateway loop can never stall the broker (nor the
other way round).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from types import TracebackType
from typing import Self

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
        self._broker = Broker(
            loop=self._loop,
            config={
                "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            },
        )

    async def start(self) -> None:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._thread.start()
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._broker.start(), self._loop)
        )

    async def stop(self) -> None:
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        )
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
