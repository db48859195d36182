"""The Modbus session: connect, read, write, close. Thin, over pymodbus's async clients.

One ``Bus`` per physical bus — a serial line, or a TCP gateway shared by several unit ids —
with one lock, so requests on a bus are serialized whoever sends them. Pacing is per device:
a pause after connecting, a pause between requests, and a timeout.

Exceptions (catch at the level you need):
    DeviceError                 edge's base
      DeviceUnreachable         no answer: refused, timed out, bus down
      ModbusExceptionResponse   the device answered with a Modbus exception code
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from openbranch.edge.core.config import ModbusRtu, ModbusRtuOverTcp, ModbusTcp
from openbranch.edge.core.device import DeviceError, DeviceUnreachable
from openbranch.integrations.modbus.register import Table

__all__ = ["EXCEPTION_NAMES", "Bus", "BusPool", "ModbusExceptionResponse", "Pacing"]

log = logging.getLogger(__name__)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusExceptionResponse(DeviceError):
    def __init__(self, code: int, what: str) -> None:
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown")
        super().__init__(f"{what}: exception {code} ({name})")


def _why(exc: BaseException) -> str:
    return str(exc) or ("timeout" if isinstance(exc, TimeoutError) else type(exc).__name__)


@dataclass(frozen=True, slots=True)
class Pacing:
    timeout: float = 1.0
    pause_after_connect: float = 0.0
    pause_between_requests: float = 0.0


BusConfig = ModbusTcp | ModbusRtuOverTcp | ModbusRtu


class Bus:
    """A serialized session on one physical bus."""

    def __init__(self, config: BusConfig) -> None:
        self.key = config.bus
        self._config = config
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._last_request = 0.0

    def _make_client(self, timeout: float) -> Any:
        c = self._config
        common: dict[str, Any] = {"timeout": timeout, "retries": 0, "reconnect_delay": 0}
        if isinstance(c, ModbusTcp):
            return AsyncModbusTcpClient(c.host, port=c.port, **common)
        if isinstance(c, ModbusRtuOverTcp):
            return AsyncModbusTcpClient(c.host, port=c.port, framer=FramerType.RTU, **common)
        return AsyncModbusSerialClient(
            c.serial_port,
            framer=FramerType.RTU,
            baudrate=c.baudrate,
            parity=c.parity,
            stopbits=c.stopbits,
            bytesize=8,
            **common,
        )

    async def _connected(self, pacing: Pacing) -> Any:
        if self._client is not None and self._client.connected:
            return self._client
        await self._drop()
        client = self._make_client(pacing.timeout)
        try:
            async with asyncio.timeout(pacing.timeout + 0.5):
                ok = await client.connect()
        except (TimeoutError, OSError) as exc:
            client.close()
            raise DeviceUnreachable(f"{self.key}: cannot connect ({_why(exc)})") from exc
        if not ok:
            client.close()
            raise DeviceUnreachable(f"{self.key}: cannot connect")
        self._client = client
        if pacing.pause_after_connect:
            await asyncio.sleep(pacing.pause_after_connect)
        return client

    async def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _call(self, pacing: Pacing, what: str, method: str, *args: Any, **kw: Any) -> Any:
        async with self._lock:
            client = await self._connected(pacing)
            wait = self._last_request + pacing.pause_between_requests - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                async with asyncio.timeout(pacing.timeout):
                    response = await getattr(client, method)(*args, **kw)
            except (TimeoutError, ModbusException, OSError) as exc:
                if not client.connected:
                    await self._drop()
                raise DeviceUnreachable(f"{what}: no answer ({_why(exc)})") from exc
            finally:
                self._last_request = time.monotonic()
        if response.isError():
            raise ModbusExceptionResponse(int(getattr(response, "exception_code", 0)), what)
        return response

    async def read(
        self, *, unit: int, table: Table, address: int, count: int, pacing: Pacing
    ) -> list[int] | list[bool]:
        """Read ``count`` registers (or bits) of ``table`` starting at ``address``."""
        method = {
            Table.COIL: "read_coils",
            Table.DISCRETE_INPUT: "read_discrete_inputs",
            Table.HOLDING: "read_holding_registers",
            Table.INPUT: "read_input_registers",
        }[table]
        what = f"{self.key} unit {unit} {table} {address}+{count}"
        response = await self._call(pacing, what, method, address, count=count, device_id=unit)
        if table.is_bit:
            return [bool(b) for b in response.bits[:count]]
        registers = list(response.registers)
        if len(registers) != count:
            raise ModbusExceptionResponse(0, f"{what}: got {len(registers)} registers")
        return registers

    async def write(
        self, *, unit: int, table: Table, address: int, values: list[int], pacing: Pacing
    ) -> None:
        """Write coils (0/1) or holding registers."""
        what = f"{self.key} unit {unit} write {table} {address}+{len(values)}"
        if table is Table.COIL:
            if len(values) == 1:
                await self._call(
                    pacing, what, "write_coil", address, bool(values[0]), device_id=unit
                )
            else:
                bits = [bool(v) for v in values]
                await self._call(pacing, what, "write_coils", address, bits, device_id=unit)
        elif table is Table.HOLDING:
            if len(values) == 1:
                await self._call(pacing, what, "write_register", address, values[0], device_id=unit)
            else:
                await self._call(pacing, what, "write_registers", address, values, device_id=unit)
        else:
            raise ModbusExceptionResponse(1, f"{what}: {table} is read-only")

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


class BusPool:
    """One ``Bus`` per physical bus, shared by every device on it."""

    def __init__(self) -> None:
        self._buses: dict[str, Bus] = {}

    def get(self, config: BusConfig) -> Bus:
        bus = self._buses.get(config.bus)
        if bus is None:
            bus = self._buses[config.bus] = Bus(config)
        return bus

    async def close(self) -> None:
        for bus in self._buses.values():
            await bus.close()
