"""The Modbus session: connect, read, write, close. Thin, over pymodbus's async clients.

One ``Bus`` per physical bus — a serial line, or a TCP gateway shared by several unit ids —
with one lock, so requests on a bus are serialized whoever sends them, in the order they
asked (one queue per line). Pacing is per device: a pause after connecting, a pause between
requests, and a timeout.

On an RTU line (a serial port, or RTU frames through a transparent serial server) the bus also
keeps the line's discipline:

- **Silence.** A request goes out only after 3.5 characters of silence (t3.5, ``rtu.silence``)
  since the last byte seen on the line, the end of a frame or garbage, and a device's pause.
- **A garbled answer is given up early.** Bytes came, then the line went quiet without a
  valid frame (a CRC error, a frame cut short, garbage): waiting for the timeout would only
  hold the line, so the wait ends after a short stall (``stall``) instead. Silence counts
  only while the gateway was listening: a look it woke from late (its own loop was busy)
  proves nothing, since bytes held up meanwhile may not have been read yet.
- **One retry.** A request that got no answer or a garbled one is sent once more; a second
  failure is the device's (``DeviceUnreachable`` or ``GarbledAnswer``). Writes are absolute
  values (FC 5, 6, 15, 16), so sending one twice is harmless.
- **A lost port is reopened.** A serial port that disappears (a USB converter unplugged) is
  closed; the next request reopens it by name. The bus logs once when the port is lost and
  once when it is back.

Exceptions (catch at the level you need):
    DeviceError                 edge's base
      DeviceUnreachable         no answer: refused, timed out, port gone, bus down
      ModbusExceptionResponse   the device answered with a Modbus exception code
        ShortAnswer             the device answered fewer registers or bits than asked
      GarbledAnswer             bytes came back, twice, but no valid answer
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from openbranch.edge.core.config import ModbusRtu, ModbusRtuOverTcp, ModbusTcp
from openbranch.edge.core.device import DeviceError, DeviceUnreachable
from openbranch.integrations.modbus.register import Table
from openbranch.integrations.modbus.rtu import character_bits, character_time, silence

__all__ = [
    "EXCEPTION_NAMES",
    "Bus",
    "BusPool",
    "BusStats",
    "GarbledAnswer",
    "ModbusExceptionResponse",
    "Pacing",
    "ShortAnswer",
]

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

_FUNCTION = {  # client method -> the function code its answer carries
    "read_coils": 1,
    "read_discrete_inputs": 2,
    "read_holding_registers": 3,
    "read_input_registers": 4,
    "write_coil": 5,
    "write_register": 6,
    "write_coils": 15,
    "write_registers": 16,
}
_READ = {
    Table.COIL: "read_coils",
    Table.DISCRETE_INPUT: "read_discrete_inputs",
    Table.HOLDING: "read_holding_registers",
    Table.INPUT: "read_input_registers",
}
_CLIENT_TIMEOUT = 60.0  # pymodbus's own; ours (the device's ``timeout``) always ends first
_STALL_FLOOR = 0.05  # seconds: USB converters deliver a frame in chunks up to 16 ms apart


class ModbusExceptionResponse(DeviceError):
    def __init__(self, code: int, what: str) -> None:
        self.code = code
        name = EXCEPTION_NAMES.get(code, "unknown")
        super().__init__(f"{what}: exception {code} ({name})")


class ShortAnswer(ModbusExceptionResponse):
    """The device answered a read with fewer registers (or bits) than asked."""

    def __init__(self, what: str, got: int) -> None:
        super().__init__(0, what)
        self.got = got
        self.args = (f"{what}: answered only {got}",)


class GarbledAnswer(DeviceError):
    """Bytes came back, but no valid answer: a CRC error, a frame cut short, garbage."""


class _Garbled(Exception):
    """One garbled exchange (retried once before it becomes a ``GarbledAnswer``)."""


class _Lost(Exception):
    """The port or the connection went away during an exchange."""


def _why(exc: BaseException) -> str:
    return str(exc) or ("timeout" if isinstance(exc, TimeoutError) else type(exc).__name__)


@dataclass(frozen=True, slots=True)
class Pacing:
    timeout: float = 1.0
    pause_after_connect: float = 0.0
    pause_between_requests: float = 0.0
    retry: bool = True  # on an RTU line, send a request again after no or a garbled answer


@dataclass(slots=True)
class BusStats:
    """Counts since the bus was made: what ``gateway check --connect`` and tests read."""

    requests: int = 0  # exchanges sent, retries included
    answered: int = 0  # valid answers, exception responses included
    timeouts: int = 0  # exchanges with no byte back
    garbled: int = 0  # exchanges with bytes back but no valid answer
    retries: int = 0
    ports_lost: int = 0
    reopened: int = 0  # connections made again after the first


BusConfig = ModbusTcp | ModbusRtuOverTcp | ModbusRtu


def _line(config: BusConfig) -> tuple[Any, ...]:
    """What every device on one bus must agree on."""
    if isinstance(config, ModbusRtu):
        return (config.baudrate, config.parity, config.stopbits)
    return (config.type,)


class Bus:
    """A serialized session on one physical bus."""

    def __init__(self, config: BusConfig) -> None:
        self.key = config.bus
        self.stats = BusStats()
        self._config = config
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._last_request = 0.0
        self._rtu = not isinstance(config, ModbusTcp)
        # TCP: the network delimits frames, and a transparent serial server keeps t3.5 on its
        # line; a stall on a network is no sign of a garbled frame
        self.silence = 0.0
        self.stall: float | None = None
        if isinstance(config, ModbusRtu):
            bits = character_bits(config.parity, config.stopbits)
            self.silence = silence(config.baudrate, bits)
            self.stall = max(8 * character_time(config.baudrate, bits), _STALL_FLOOR)
        self._line_at = 0.0  # monotonic time of the last byte seen on the line
        self._received = 0  # the most bytes held unframed at once during the current exchange
        self._lost_at: float | None = None
        self._connections = 0

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's packet trace: every frame sent and every byte received (unchanged)."""
        if not sending:  # ``data`` is pymodbus's whole buffer of bytes not yet framed
            self._received = max(self._received, len(data))
            self._line_at = time.monotonic()
        return data

    def _make_client(self) -> Any:
        c = self._config
        common: dict[str, Any] = {
            "timeout": _CLIENT_TIMEOUT,
            "retries": 0,
            "reconnect_delay": 0,
            "trace_packet": self._trace,
        }
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

    def _cannot_connect(self, why: str) -> DeviceUnreachable:
        c = self._config
        if isinstance(c, ModbusRtu):
            if not Path(c.serial_port).exists():
                why = "no such serial port: unplugged?"
            return DeviceUnreachable(f"{self.key}: cannot open the serial port ({why})")
        return DeviceUnreachable(f"{self.key}: cannot connect ({why})")

    async def _connected(self, pacing: Pacing) -> Any:
        if self._client is not None:
            if self._client.connected:
                return self._client
            self._lost("closed by the other end, or the port went away")
        await self._drop()
        client = self._make_client()
        try:
            async with asyncio.timeout(pacing.timeout + 0.5):
                ok = await client.connect()
        except (TimeoutError, OSError) as exc:
            client.close()
            raise self._cannot_connect(_why(exc)) from exc
        if not ok:
            client.close()
            raise self._cannot_connect("refused")
        self._client = client
        self._connections += 1
        if self._connections > 1:
            self.stats.reopened += 1
        if self._lost_at is not None:
            log.warning("%s: open again after %.1f s", self.key, time.monotonic() - self._lost_at)
            self._lost_at = None
        if pacing.pause_after_connect:
            await asyncio.sleep(pacing.pause_after_connect)
        return client

    async def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _lost(self, why: str) -> None:
        self.stats.ports_lost += 1
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            log.warning("%s: connection lost (%s); reopened at the next request", self.key, why)

    async def _quiet(self, pacing: Pacing) -> None:
        """Wait for t3.5 of silence on the line and for the device's pause."""
        wait = (
            max(
                self._line_at + self.silence,
                self._last_request + pacing.pause_between_requests,
            )
            - time.monotonic()
        )
        if wait > 0:
            await asyncio.sleep(wait)

    def _heard_quiet(self, quiet: float, looked: float, tick: float) -> float:
        """The silence heard so far, ``quiet``, with the look begun at ``looked`` added."""
        now = time.monotonic()
        if self._line_at >= looked:
            return 0.0  # bytes came during this look
        if now - looked > 1.5 * tick:
            # the gateway woke late: its own loop was busy, and bytes held up meanwhile may
            # not have been read yet; a look it was not there for proves no silence
            return quiet
        return quiet + now - looked

    async def _exchange(
        self, client: Any, pacing: Pacing, method: str, *args: Any, **kw: Any
    ) -> Any:
        """One request and its answer. Raises TimeoutError (no byte back), ``_Garbled`` (bytes
        but no valid answer), ``_Lost`` (the connection went away)."""
        await self._quiet(pacing)
        self._received = 0
        self.stats.requests += 1
        call = asyncio.ensure_future(getattr(client, method)(*args, **kw))
        deadline = time.monotonic() + pacing.timeout
        quiet = 0.0  # seconds the line was seen quiet, by the gateway listening, since a byte
        try:
            while (left := deadline - time.monotonic()) > 0:
                tick = left if self.stall is None else min(left, self.stall / 2)
                looked = time.monotonic()
                done, _ = await asyncio.wait({call}, timeout=tick)
                if done:
                    response = call.result()
                    if response.function_code & 0x7F != _FUNCTION[method]:
                        raise _Garbled(f"an answer to function {response.function_code}")
                    self.stats.answered += 1
                    return response
                if not client.connected:
                    raise _Lost("the port or the connection went away")
                if self.stall is None or not self._received:
                    continue
                quiet = self._heard_quiet(quiet, looked, tick)
                if quiet >= self.stall:
                    raise _Garbled(f"{self._received} bytes, then silence: no valid frame")
        except ModbusException as exc:  # pymodbus gave up itself
            if not client.connected:
                raise _Lost(_why(exc)) from exc
            raise TimeoutError(_why(exc)) from exc
        finally:
            if not call.done():
                call.cancel()
                await asyncio.wait({call})
        if self._received:
            raise _Garbled(f"{self._received} bytes, no valid frame")
        raise TimeoutError("timeout")

    async def _call(self, pacing: Pacing, what: str, method: str, *args: Any, **kw: Any) -> Any:
        async with self._lock:
            client = await self._connected(pacing)
            attempts = 2 if self._rtu and pacing.retry else 1
            for attempt in range(attempts):
                try:
                    response = await self._exchange(client, pacing, method, *args, **kw)
                    break
                except _Lost as exc:
                    self._lost(_why(exc))
                    await self._drop()
                    raise DeviceUnreachable(f"{what}: no answer ({_why(exc)})") from exc
                except (TimeoutError, _Garbled, OSError) as exc:
                    garbled = isinstance(exc, _Garbled)
                    if garbled:
                        self.stats.garbled += 1
                    else:
                        self.stats.timeouts += 1
                    if not client.connected:
                        self._lost(_why(exc))
                        await self._drop()
                        raise DeviceUnreachable(f"{what}: no answer ({_why(exc)})") from exc
                    if attempt + 1 < attempts:
                        self.stats.retries += 1
                        log.debug("%s: %s; sending it again", what, _why(exc))
                        continue
                    if garbled:
                        raise GarbledAnswer(f"{what}: garbled answer ({_why(exc)})") from exc
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
        what = f"{self.key} unit {unit} {table} {address}+{count}"
        response = await self._call(
            pacing, what, _READ[table], address, count=count, device_id=unit
        )
        if table.is_bit:
            bits = [bool(b) for b in response.bits]
            if len(bits) < count:  # bits come in whole bytes: fewer means a short answer
                raise ShortAnswer(what, len(bits))
            return bits[:count]
        registers = list(response.registers)
        if len(registers) != count:
            raise ShortAnswer(what, len(registers))
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
        self._lines: dict[str, tuple[Any, ...]] = {}

    def get(self, config: BusConfig) -> Bus:
        bus = self._buses.get(config.bus)
        if bus is None:
            bus = self._buses[config.bus] = Bus(config)
            self._lines[config.bus] = _line(config)
        elif self._lines[config.bus] != _line(config):
            raise ValueError(
                f"{config.bus}: devices on one line must agree on its settings"
                f" ({self._lines[config.bus]} and {_line(config)})"
            )
        return bus

    async def close(self) -> None:
        for bus in self._buses.values():
            await bus.close()
