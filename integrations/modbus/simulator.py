"""Real Modbus servers built from device profiles, for the demo and the tests.

A ``SimulatedUnit`` holds a register image built from its profile: points get values through
``set`` (in engineering units, encoded exactly as the device would), gateway writes land in
the image, and a test can make a block answer a Modbus exception or a shortened block, or the
whole unit go silent. A ``ModbusSimulator`` serves several units on one TCP port, like a
Modbus TCP gateway in front of an RS-485 line (or, with RTU framing, a transparent serial
server). A ``ModbusRtuSimulator`` serves them with pymodbus's serial server on a simulated
RS-485 line (``serialline.SerialLine``: socat's pseudo-terminals, bytes paced at the baud rate).

Unused addresses between a profile's points read as zero; addresses outside them, and in the
profile's holes, answer exception 2 (illegal data address), as real devices do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from openbranch.edge.core.config import DeviceConfig, ModbusRtu, ModbusRtuOverTcp, ModbusTcp
from openbranch.edge.core.device import PointInfo
from openbranch.edge.core.reading import Value
from openbranch.integrations.modbus.decode import NoValue, encode
from openbranch.integrations.modbus.device import decode_point
from openbranch.integrations.modbus.profile import ModbusPoint, ModbusProfile
from openbranch.integrations.modbus.register import DataType, Table
from openbranch.integrations.modbus.serialline import SerialLine

__all__ = ["ModbusRtuSimulator", "ModbusSimulator", "SimulatedUnit", "Simulation"]

log = logging.getLogger(__name__)

_TABLE_OF_FUNCTION = {
    1: Table.COIL,
    5: Table.COIL,
    15: Table.COIL,
    2: Table.DISCRETE_INPUT,
    3: Table.HOLDING,
    6: Table.HOLDING,
    16: Table.HOLDING,
    22: Table.HOLDING,
    23: Table.HOLDING,
    4: Table.INPUT,
}


@dataclass(frozen=True, slots=True)
class _Failure:
    table: Table
    start: int
    end: int
    code: int


class SimulatedUnit:
    """One simulated device (implements ``edge.device.SimulatedDevice``)."""

    def __init__(self, *, device_id: str, profile: ModbusProfile, unit_id: int = 1) -> None:
        self._device_id = device_id
        self.profile = profile
        self.unit_id = unit_id
        self._image: dict[Table, dict[int, int]] = {t: {} for t in Table}
        self._bounds: dict[Table, tuple[int, int]] = {}
        for point in profile.points:
            lo, hi = self._bounds.get(point.table, (point.address, point.address + point.count - 1))
            self._bounds[point.table] = (
                min(lo, point.address),
                max(hi, point.address + point.count - 1),
            )
        self._failures: list[_Failure] = []
        self._short: list[tuple[Table, int, int]] = []
        self._silent = False
        self._stuck: set[int] = set()
        self.requests = 0
        self.writes: list[tuple[Table, int, list[int]]] = []

    @property
    def device_id(self) -> str:
        return self._device_id

    def points(self) -> tuple[PointInfo, ...]:
        return self.profile.point_infos()

    def set(self, point_id: str, value: Value) -> None:
        point = self.profile.point(point_id)
        self._store(point, self._encode(point, value))

    def set_raw(self, point_id: str, words: Sequence[int]) -> None:
        """Put raw register words (e.g. a sentinel or a NaN pattern) under a point."""
        point = self.profile.point(point_id)
        if len(words) != point.count:
            raise ValueError(f"{point_id} occupies {point.count} registers, got {len(words)}")
        self._store(point, list(words))

    def get(self, point_id: str) -> Value | None:
        point = self.profile.point(point_id)
        image = self._image[point.table]
        words = [image.get(point.address + i, 0) for i in range(point.count)]
        value = decode_point(self.profile, point, words)
        return None if isinstance(value, NoValue) else value

    def set_silent(self, silent: bool) -> None:
        self._silent = silent

    def fail(self, table: Table, start: int, end: int, code: int = 2) -> None:
        """Answer exception ``code`` to any request touching ``start..end`` of ``table``."""
        self._failures.append(_Failure(table, start, end, code))

    def fail_point(self, point_id: str, code: int = 2) -> None:
        point = self.profile.point(point_id)
        self.fail(point.table, point.address, point.address + point.count - 1, code)

    def shorten(self, table: Table, start: int, end: int) -> None:
        """Leave ``start..end`` of ``table`` out of every answer, without an exception: a read
        that reaches into it is answered with the registers (or bits) before ``start`` only,
        as some devices answer a read that runs past the end of their map."""
        self._short.append((table, start, end))

    def clear_failures(self) -> None:
        self._failures.clear()
        self._short.clear()

    def stick(self, point_id: str) -> None:
        """Accept writes to ``point_id`` but keep the old value, like a jammed actuator."""
        self._stuck.add(self.profile.point(point_id).address)

    def _encode(self, point: ModbusPoint, value: Value) -> list[int]:
        if point.type in (DataType.BOOL, DataType.BITS):
            bit = bool(value) != point.invert
            if point.type is DataType.BOOL:
                return [int(bit)]
            word = self._image[point.table].get(point.address, 0)
            assert point.bit is not None
            mask = 1 << point.bit
            return [(word | mask) if bit else (word & ~mask)]
        if point.enum is not None and isinstance(value, str):
            raw = {state: raw for raw, state in point.enum.items()}[value]
            value = raw
        return encode(
            value,
            dtype=point.type,
            order=self.profile.order_of(point),
            scale=point.scale,
            offset=point.offset,
            length=point.length,
        )

    def _store(self, point: ModbusPoint, words: Sequence[int]) -> None:
        image = self._image[point.table]
        for i, word in enumerate(words):
            image[point.address + i] = int(word)

    def answer(self, function: int, address: int, count: int) -> list[int] | ExcCodes:
        """The registers (or bits) a read of ``count`` at ``address`` returns, or an exception."""
        if self._silent:
            raise NoSuchIdException(f"unit {self.unit_id} is silent")
        self.requests += 1
        table = _TABLE_OF_FUNCTION.get(function)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        end = address + count - 1
        for failure in self._failures:
            if failure.table is table and address <= failure.end and failure.start <= end:
                return ExcCodes(failure.code)
        if not table.is_bit and count > self.profile.max_registers:
            return ExcCodes.ILLEGAL_VALUE  # as the real device refuses a read above its limit
        lo, hi = self._bounds.get(table, (1, 0))
        if address < lo or end > hi:
            return ExcCodes.ILLEGAL_ADDRESS
        for hole in self.profile.holes:
            if hole.table is table and address <= hole.end and hole.start <= end:
                return ExcCodes.ILLEGAL_ADDRESS
        for short, start, stop in self._short:
            if short is table and address <= stop and start <= end:
                end = min(end, start - 1)  # nothing at all when the read starts inside
        image = self._image[table]
        return [image.get(a, 0) for a in range(address, end + 1)]

    def accept(self, function: int, address: int, values: Sequence[int]) -> ExcCodes | None:
        answer = self.answer(function, address, len(values))
        if isinstance(answer, ExcCodes):
            return answer
        table = _TABLE_OF_FUNCTION[function]
        if not table.writable:
            return ExcCodes.ILLEGAL_FUNCTION
        for i, value in enumerate(values):
            if address + i not in self._stuck:
                self._image[table][address + i] = int(value)
        self.writes.append((table, address, [int(v) for v in values]))
        return None


class _Context(ModbusServerContext):
    """Routes requests to units by unit id. Unknown or silent units do not answer."""

    def __init__(self, units: Mapping[int, SimulatedUnit]) -> None:
        # pymodbus 3.16 accepts a ModbusServerContext with old_simulator set and calls only the
        # two async methods below; the base initializer is skipped on purpose.
        self.old_simulator = True
        self.simdevices = []
        self._units = dict(units)

    def _unit(self, device_id: int) -> SimulatedUnit:
        unit = self._units.get(device_id)
        if unit is None:
            raise NoSuchIdException(f"no unit {device_id}")
        return unit

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        answer = self._unit(device_id).answer(func_code, address, count)
        if isinstance(answer, list) and _TABLE_OF_FUNCTION[func_code].is_bit:
            return [bool(v) for v in answer]
        return answer

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        return self._unit(device_id).accept(func_code, address, [int(v) for v in values])

    def device_ids(self) -> list[int]:
        return list(self._units)


class ModbusSimulator:
    """A Modbus TCP server on ``host:port`` serving ``units`` by unit id."""

    def __init__(
        self, *, host: str, port: int, units: Sequence[SimulatedUnit], rtu_framing: bool = False
    ) -> None:
        self.host = host
        self.port = port
        self.rtu_framing = rtu_framing  # RTU frames over TCP, as a transparent serial server
        self.units = {u.unit_id: u for u in units}
        if len(self.units) != len(units):
            raise ValueError(f"{host}:{port}: two simulated units share a unit id")
        self._server: ModbusTcpServer | None = None

    async def start(self) -> None:
        self._server = ModbusTcpServer(
            _Context(self.units),
            address=(self.host, self.port),
            ignore_missing_devices=True,
            framer=FramerType.RTU if self.rtu_framing else FramerType.SOCKET,
        )
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None


class ModbusRtuSimulator:
    """Units on a simulated RS-485 line: pymodbus's serial server at the line's far end.

    ``start`` starts the line (two socat processes; ``SocatMissing`` without socat) and the
    server; the gateway opens ``line.port``.
    """

    def __init__(self, *, line: SerialLine, units: Sequence[SimulatedUnit]) -> None:
        self.line = line
        self.units = {u.unit_id: u for u in units}
        if len(self.units) != len(units):
            raise ValueError(f"{line.port}: two simulated units share a unit id")
        self._server: ModbusSerialServer | None = None

    async def start(self) -> None:
        await self.line.start()
        try:
            self._server = ModbusSerialServer(
                _Context(self.units),
                framer=FramerType.RTU,
                port=str(self.line.device_port),
                baudrate=self.line.baudrate,
                parity=self.line.parity,
                stopbits=self.line.stopbits,
                ignore_missing_devices=True,
            )
            await self._server.serve_forever(background=True)
        except BaseException:
            await self.line.stop()
            raise

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None
        await self.line.stop()


class Simulation:
    """Simulated devices for a gateway's Modbus devices: one TCP server per host:port (RTU
    framed for RTU over TCP), one simulated RS-485 line per serial port."""

    def __init__(
        self, devices: Sequence[DeviceConfig], profiles: Mapping[str, ModbusProfile]
    ) -> None:
        by_address: dict[tuple[str, int, bool], list[SimulatedUnit]] = {}
        by_port: dict[str, tuple[ModbusRtu, list[SimulatedUnit]]] = {}
        self._devices: dict[str, SimulatedUnit] = {}
        for device in devices:
            transport = device.transport
            if not isinstance(transport, ModbusTcp | ModbusRtuOverTcp | ModbusRtu):
                raise ValueError(f"{device.id}: {transport.type} is not a Modbus transport")
            unit = SimulatedUnit(
                device_id=device.id, profile=profiles[device.profile], unit_id=transport.unit_id
            )
            if isinstance(transport, ModbusRtu):
                by_port.setdefault(transport.serial_port, (transport, []))[1].append(unit)
            else:
                rtu = isinstance(transport, ModbusRtuOverTcp)
                by_address.setdefault((transport.host, transport.port, rtu), []).append(unit)
            self._devices[device.id] = unit
        self.servers: list[ModbusSimulator | ModbusRtuSimulator] = [
            ModbusSimulator(host=host, port=port, units=units, rtu_framing=rtu)
            for (host, port, rtu), units in by_address.items()
        ]
        self.lines = {
            port: SerialLine(
                port=port,
                baudrate=first.baudrate,
                parity=first.parity,
                stopbits=first.stopbits,
            )
            for port, (first, _) in by_port.items()
        }
        self.servers += [
            ModbusRtuSimulator(line=self.lines[port], units=units)
            for port, (_, units) in by_port.items()
        ]

    @property
    def devices(self) -> Mapping[str, SimulatedUnit]:
        return self._devices

    async def start(self) -> None:
        for server in self.servers:
            await server.start()

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.servers))
