"""A Modbus device as the gateway sees it: its plan, computed once, and polls that only do I/O.

A failed request costs only the points it covers; a point whose value is a sentinel, NaN or
out of its enum is reported missing with the reason, never turned into a number.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from openbranch.edge.core import schema
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.command import Command, CommandError
from openbranch.edge.core.config import DeviceConfig, ModbusRtu, ModbusRtuOverTcp, ModbusTcp
from openbranch.edge.core.device import (
    Accept,
    DeviceError,
    DeviceUnreachable,
    PollResult,
    Reject,
    Series,
)
from openbranch.edge.core.reading import Reading, Value
from openbranch.integrations.modbus.decode import NoValue, decode, encode
from openbranch.integrations.modbus.planner import Request, plan
from openbranch.integrations.modbus.profile import ModbusPoint, ModbusProfile
from openbranch.integrations.modbus.register import DataType
from openbranch.integrations.modbus.transport import (
    Bus,
    GarbledAnswer,
    ModbusExceptionResponse,
    Pacing,
)

__all__ = ["ModbusDevice", "decode_point"]


def decode_point(
    profile: ModbusProfile, point: ModbusPoint, words: Sequence[int] | Sequence[bool]
) -> Value | NoValue:
    """The point's value in its schema field's type, from its registers or bit."""
    value = decode(
        [int(w) for w in words],
        dtype=point.type,
        order=profile.order_of(point),
        scale=point.scale,
        offset=point.offset,
        sentinels=point.sentinels,
        bit=point.bit,
        length=point.length,
    )
    if isinstance(value, NoValue):
        return value
    if point.type in (DataType.BOOL, DataType.BITS) and point.invert:
        value = not value
    if point.enum is not None:
        state = point.enum.get(int(value))
        return NoValue(f"raw value {value} is not in the enum") if state is None else state
    target = point.schema_field
    if target is not None and target.type is schema.FieldType.FLOAT and not isinstance(value, bool):
        return float(value)
    return value


@dataclass(frozen=True, slots=True)
class _Group:
    interval: float
    requests: tuple[Request, ...]


class ModbusDevice:
    """Implements ``edge.device.DeviceSource`` for one Modbus unit."""

    def __init__(
        self,
        *,
        config: DeviceConfig,
        profile: ModbusProfile,
        bus: Bus,
        branch: str,
        clock: Clock,
    ) -> None:
        transport = config.transport
        if not isinstance(transport, ModbusTcp | ModbusRtuOverTcp | ModbusRtu):
            raise TypeError(f"{config.id}: not a Modbus transport")
        self._config = config
        self._profile = profile
        self._bus = bus
        self._branch = branch
        self._clock = clock
        self._unit = transport.unit_id
        self._pacing = Pacing(
            timeout=transport.timeout,
            pause_after_connect=max(transport.pause_after_connect, profile.pause_after_connect),
            pause_between_requests=max(
                transport.pause_between_requests, profile.pause_between_requests
            ),
        )
        self._points = {p.id: p for p in profile.points if p.measurement is not None}
        max_gap = profile.max_gap if transport.max_gap is None else transport.max_gap
        holes = [h.hole() for h in profile.holes]
        default = config.poll.get("default", 10.0)
        self._groups: dict[str, _Group] = {}
        for group in sorted({p.group for p in self._points.values()}):
            footprints = [p.footprint() for p in self._points.values() if p.group == group]
            self._groups[group] = _Group(
                interval=config.poll.get(group, default),
                requests=plan(
                    footprints,
                    max_gap=max_gap,
                    holes=holes,
                    one_per_point=transport.one_request_per_point,
                    max_registers=profile.max_registers,
                ),
            )

    @property
    def device_id(self) -> str:
        return self._config.id

    @property
    def profile(self) -> ModbusProfile:
        return self._profile

    def rollovers(self) -> Mapping[Series, float]:
        """Implements ``edge.device.Rollovers``: per (measurement, field), the rollover of the
        point behind it, from its register type and scale (``ModbusPoint.rollover``). A value
        fed by several points (different tags) is left out unless they all agree."""
        widths: dict[Series, set[float | None]] = {}
        for point in self._points.values():
            assert point.measurement is not None and point.field is not None
            widths.setdefault((point.measurement, point.field), set()).add(point.rollover)
        return {
            series: rollover
            for series, (rollover, *others) in widths.items()
            if rollover is not None and not others
        }

    def intervals(self) -> Mapping[str, float]:
        return {name: g.interval for name, g in self._groups.items()}

    def requests(self) -> tuple[Request, ...]:
        return tuple(r for g in self._groups.values() for r in g.requests)

    def describe_plan(self) -> str:
        requests = self.requests()
        registers = sum(r.count for r in requests if not r.table.is_bit)
        bits = sum(r.count for r in requests if r.table.is_bit)
        size = f"{registers} registers" + (f", {bits} bits" if bits else "")
        groups = ", ".join(f"{n} every {g.interval:g} s" for n, g in self._groups.items())
        return f"{self.device_id}: {len(requests)} requests, {size} ({groups})"

    async def poll(self, groups: Collection[str]) -> PollResult:
        now = self._clock.now()
        values: dict[str, Value] = {}
        missing: dict[str, str] = {}
        failures: list[str] = []
        reached = False
        requests = [
            r for name in groups if name in self._groups for r in self._groups[name].requests
        ]
        for i, request in enumerate(requests):
            try:
                words = await self._bus.read(
                    unit=self._unit,
                    table=request.table,
                    address=request.address,
                    count=request.count,
                    pacing=self._pacing,
                )
            except (ModbusExceptionResponse, GarbledAnswer) as exc:
                # the device answered: an exception, or a frame the line mangled twice
                reached = True
                failures.append(str(exc))
                missing.update((key, str(exc)) for key in request.keys)
                continue
            except DeviceUnreachable as exc:
                # Stop here: the rest would only wait for their own timeouts and hold the bus.
                failures.append(str(exc))
                for rest in requests[i:]:
                    missing.update((key, "no answer") for key in rest.keys)
                break
            reached = True
            for key in request.keys:
                point = self._points[key]
                start = point.address - request.address
                value = decode_point(self._profile, point, words[start : start + point.count])
                if isinstance(value, NoValue):
                    missing[key] = value.reason
                else:
                    values[key] = value
        if not reached:
            return PollResult(reached=False, failures=tuple(failures), missing=missing)
        return PollResult(
            readings=self._readings(values, now),
            reached=True,
            failures=tuple(failures),
            missing=missing,
        )

    def _readings(self, values: Mapping[str, Value], now: datetime) -> tuple[Reading, ...]:
        grouped: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Value]] = {}
        for key, value in values.items():
            point = self._points[key]
            assert point.measurement is not None and point.field is not None
            tags = tuple(sorted(self._profile.tags_for(point, self._config.zone).items()))
            grouped.setdefault((point.measurement, tags), {})[point.field] = value
        return tuple(
            Reading(
                branch=self._branch,
                device=self.device_id,
                measurement=schema.measurement(name),
                fields=fields,
                tags=dict(tags),
                time=now,
            )
            for (name, tags), fields in sorted(grouped.items())
        )

    async def listen(self, accept: Accept, reject: Reject) -> None:
        """Modbus devices are polled; nothing to listen to."""

    async def write(self, command: Command) -> Value:
        """Write a coil or holding register, then read it back to confirm."""
        if command.expired(self._clock.now()):
            raise CommandError(f"{self.device_id}.{command.point}: expired, not carried out")
        try:
            point = self._profile.point(command.point)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not point.writable:
            raise CommandError(f"{self.device_id}.{point.id} is not writable")
        words = self._encode(point, command.value)
        await self._bus.write(
            unit=self._unit,
            table=point.table,
            address=point.address,
            values=words,
            pacing=self._pacing,
        )
        value = await self._read(point)
        if isinstance(value, NoValue):
            raise CommandError(
                f"{self.device_id}.{point.id}: read-back gave no value ({value.reason})"
            )
        return value

    async def read_point(self, point: str) -> Value:
        """Implements ``edge.device.PointReader``: one read of ``point``'s registers (or bit),
        decoded as a poll or a write's read-back decodes it."""
        try:
            found = self._profile.point(point)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        value = await self._read(found)
        if isinstance(value, NoValue):
            raise DeviceError(f"{self.device_id}.{found.id}: no value ({value.reason})")
        return value

    async def _read(self, point: ModbusPoint) -> Value | NoValue:
        words = await self._bus.read(
            unit=self._unit,
            table=point.table,
            address=point.address,
            count=point.count,
            pacing=self._pacing,
        )
        return decode_point(self._profile, point, words)

    def _encode(self, point: ModbusPoint, value: Value) -> list[int]:
        where = f"{self.device_id}.{point.id}"
        if point.type in (DataType.BOOL, DataType.BITS):
            if not isinstance(value, bool):
                raise CommandError(f"{where}: expects true or false, got {value!r}")
            if point.type is DataType.BITS:
                raise CommandError(f"{where}: writing a single bit of a register is not supported")
            return [int(value != point.invert)]
        if point.enum is not None:
            raw = {state: raw for raw, state in point.enum.items()}.get(str(value))
            if raw is None:
                raise CommandError(
                    f"{where}: {value!r} is not one of {sorted(point.enum.values())}"
                )
            value = raw
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandError(f"{where}: expects a number, got {value!r}")
        elif point.range is not None and not point.range[0] <= value <= point.range[1]:
            lo, hi = point.range
            raise CommandError(f"{where}: {value} is not in {lo:g}..{hi:g}")
        try:
            return encode(
                value,
                dtype=point.type,
                order=self._profile.order_of(point),
                scale=point.scale,
                offset=point.offset,
                length=point.length,
            )
        except ValueError as exc:
            raise CommandError(f"{where}: {exc}") from None

    async def close(self) -> None:
        await self._bus.close()
