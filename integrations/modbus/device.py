"""A Modbus device as the gateway sees it: its plan, computed once, and polls that only do I/O.

A failed request costs only the points it covers; a point whose value is a sentinel, NaN or
out of its enum is reported missing with the reason, never turned into a number.

The plan heals: a read the device refuses (exception 2 or 3, or a shorter block than asked) is
split at once to find the points it refuses (``healing.search``); the others get their values
in the same poll, the group is planned again around what was found, and the refused points are
reported missing with the reason on every poll. After ``reprobe_after`` seconds (a day by
default) the configured plan is tried again, in case the device's firmware changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
from openbranch.integrations.modbus.healing import Finding, Learned, search
from openbranch.integrations.modbus.planner import Footprint, Request, plan
from openbranch.integrations.modbus.profile import ModbusPoint, ModbusProfile
from openbranch.integrations.modbus.register import DataType, Table
from openbranch.integrations.modbus.transport import (
    Bus,
    GarbledAnswer,
    ModbusExceptionResponse,
    Pacing,
    ShortAnswer,
)

__all__ = ["REPROBE_AFTER", "ModbusDevice", "decode_point"]

log = logging.getLogger(__name__)

REPROBE_AFTER = 24 * 3600.0  # seconds until refused points are tried again
SCAN_UNITS = range(1, 248)


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


def _refusal(exc: ModbusExceptionResponse) -> str | None:
    """Why the device refused a read, when it is a refusal the plan can heal: exception 2
    (illegal data address), 3 (illegal data value), or a shorter block than asked."""
    if isinstance(exc, ShortAnswer):
        return "the device answers a shorter block than asked"
    if exc.code in (2, 3):
        return str(exc).rsplit(": ", 1)[-1]  # "exception 2 (illegal data address)"
    return None


@dataclass(slots=True)
class _Group:
    interval: float
    footprints: tuple[Footprint, ...]
    configured: tuple[Request, ...]  # the plan from the profile and the config
    requests: tuple[Request, ...]  # the plan in force: around what the device refused
    learned: Learned = field(default_factory=Learned)
    reprobe_at: float | None = None  # monotonic time to try the configured plan again
    reprobe_wall: datetime | None = None  # the same, on the wall clock, for the reasons


@dataclass(slots=True)
class _Outcome:
    """What the reads of one poll gave."""

    values: dict[str, Value] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def take(self, keys: Sequence[str], decoded: Mapping[str, Value | NoValue]) -> None:
        for key in keys:
            value = decoded[key]
            if isinstance(value, NoValue):
                self.missing[key] = value.reason
            else:
                self.values[key] = value


def _where(request: Request) -> str:
    return f"{request.table} {request.address}+{request.count}"


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


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
        reprobe_after: float = REPROBE_AFTER,
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
        self._reprobe_after = reprobe_after
        self._points = {p.id: p for p in profile.points if p.measurement is not None}
        self._every_point = {p.id: p for p in profile.points}
        self._max_gap = profile.max_gap if transport.max_gap is None else transport.max_gap
        self._one_per_point = transport.one_request_per_point
        self._holes = [h.hole() for h in profile.holes]
        default = config.poll.get("default", 10.0)
        self._groups: dict[str, _Group] = {}
        for group in sorted({p.group for p in self._points.values()}):
            footprints = tuple(p.footprint() for p in self._points.values() if p.group == group)
            requests = self._plan(footprints)
            self._groups[group] = _Group(
                interval=config.poll.get(group, default),
                footprints=footprints,
                configured=requests,
                requests=requests,
            )

    def _plan(
        self, footprints: Sequence[Footprint], learned: Learned | None = None
    ) -> tuple[Request, ...]:
        learned = learned or Learned()
        return plan(
            [f for f in footprints if f.key not in learned.refused],
            max_gap=self._max_gap,
            holes=[*self._holes, *learned.holes(footprints)],
            cuts=sorted(learned.cuts, key=lambda c: (c.table, c.address)),
            one_per_point=self._one_per_point,
            max_registers=self._profile.max_registers,
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

    def deadbands(self) -> Mapping[Series, float]:
        """Implements ``edge.device.Deadbands``: the profile's."""
        return self._profile.deadbands()

    def intervals(self) -> Mapping[str, float]:
        return {name: g.interval for name, g in self._groups.items()}

    def requests(self) -> tuple[Request, ...]:
        return tuple(r for g in self._groups.values() for r in g.requests)

    def refused(self) -> Mapping[str, str]:
        """The points the device refuses, found by healing, with the reason."""
        return {k: v for g in self._groups.values() for k, v in g.learned.refused.items()}

    def describe_plan(self) -> str:
        requests = self.requests()
        registers = sum(r.count for r in requests if not r.table.is_bit)
        bits = sum(r.count for r in requests if r.table.is_bit)
        size = f"{registers} registers" + (f", {bits} bits" if bits else "")
        groups = ", ".join(f"{n} every {g.interval:g} s" for n, g in self._groups.items())
        refused = self.refused()
        around = f"; refused: {', '.join(sorted(refused))}" if refused else ""
        return f"{self.device_id}: {len(requests)} requests, {size} ({groups}{around})"

    def _decode(
        self, request: Request, words: Sequence[int] | Sequence[bool]
    ) -> dict[str, Value | NoValue]:
        decoded: dict[str, Value | NoValue] = {}
        for key in request.keys:
            point = self._every_point[key]
            start = point.address - request.address
            decoded[key] = decode_point(self._profile, point, words[start : start + point.count])
        return decoded

    async def _read_request(
        self, request: Request, pacing: Pacing | None = None
    ) -> list[int] | list[bool]:
        return await self._bus.read(
            unit=self._unit,
            table=request.table,
            address=request.address,
            count=request.count,
            pacing=pacing or self._pacing,
        )

    def _reprobe(self, name: str, group: _Group) -> None:
        """Try the configured plan again once the refused points are due for a probe."""
        if group.reprobe_at is None or self._clock.monotonic() < group.reprobe_at:
            return
        log.info(
            "%s: trying %s again (refused until now: %s)",
            self.device_id,
            name,
            ", ".join(sorted(group.learned.refused)) or "none",
        )
        group.learned = Learned()
        group.requests = group.configured
        group.reprobe_at = group.reprobe_wall = None

    async def _heal(
        self,
        name: str,
        request: Request,
        refused: ModbusExceptionResponse,
        reason: str,
        out: _Outcome,
    ) -> None:
        """The device refused ``request``: find what it refuses, read the rest now, and plan
        the group again around what was found."""
        group = self._groups[name]
        footprints = {f.key: f for f in group.footprints}
        split = search(request, footprints)
        try:
            read = next(split)
            while True:
                try:
                    words = await self._read_request(read)
                except ModbusExceptionResponse as exc:
                    if _refusal(exc) is None:
                        raise
                    read = split.send(False)
                else:
                    out.take(read.keys, self._decode(read, words))
                    read = split.send(True)
        except StopIteration as stop:
            finding: Finding = stop.value
        except (ModbusExceptionResponse, GarbledAnswer) as exc:  # another failure: learn nothing
            out.failures.append(f"{refused}; while splitting it: {exc}")
            out.missing.update(
                (k, str(exc)) for k in request.keys if k not in out.values and k not in out.missing
            )
            return
        before = len(group.requests)
        group.learned = group.learned.plus(finding, reason)
        group.requests = self._plan(group.footprints, group.learned)
        if group.reprobe_at is None:
            group.reprobe_at = self._clock.monotonic() + self._reprobe_after
            group.reprobe_wall = self._clock.now() + timedelta(seconds=self._reprobe_after)
        found = "; ".join(
            [f"refused: {', '.join(finding.refused)}"] * bool(finding.refused)
            + [
                "reads no longer span "
                + ", ".join(f"{c.table} {c.address - 1}/{c.address}" for c in finding.cuts)
            ]
            * bool(finding.cuts)
        )
        out.failures.append(
            f"{refused}; split in {finding.reads} reads, {found};"
            f" {name} planned again: {before} -> {len(group.requests)} requests"
        )
        log.warning(
            "%s: %s; %s; %s planned again: %d -> %d requests; the configured plan is tried"
            " again in %s",
            self.device_id,
            refused,
            found,
            name,
            before,
            len(group.requests),
            timedelta(seconds=round(self._reprobe_after)),
        )
        for key in finding.refused:
            out.missing[key] = self._refused_reason(group, key)

    @staticmethod
    def _refused_reason(group: _Group, key: str) -> str:
        when = ""
        if group.reprobe_wall is not None:
            when = f"; read again after {group.reprobe_wall:%Y-%m-%d %H:%M} UTC"
        return f"refused by the device ({group.learned.refused[key]}){when}"

    async def poll(self, groups: Collection[str]) -> PollResult:
        now = self._clock.now()
        out = _Outcome()
        reached = False
        names = [name for name in groups if name in self._groups]
        for name in names:
            self._reprobe(name, self._groups[name])
        work = [(name, r) for name in names for r in self._groups[name].requests]
        for i, (name, request) in enumerate(work):
            try:
                try:
                    words = await self._read_request(request)
                except ModbusExceptionResponse as exc:
                    refusal = exc
                else:
                    reached = True
                    out.take(request.keys, self._decode(request, words))
                    continue
                reached = True
                reason = _refusal(refusal)
                if reason is None:
                    out.failures.append(str(refusal))
                    out.missing.update((key, str(refusal)) for key in request.keys)
                else:
                    await self._heal(name, request, refusal, reason, out)
            except GarbledAnswer as exc:  # the device talks, the line mangled it twice
                reached = True
                out.failures.append(str(exc))
                out.missing.update((k, str(exc)) for k in request.keys if k not in out.values)
            except DeviceUnreachable as exc:
                # Stop here: the rest would only wait for their own timeouts and hold the bus.
                out.failures.append(str(exc))
                for _, rest in work[i:]:
                    out.missing.update(
                        (key, "no answer") for key in rest.keys if key not in out.values
                    )
                break
        for name in names:
            group = self._groups[name]
            for key in group.learned.refused:
                out.missing.setdefault(key, self._refused_reason(group, key))
        if not reached:
            return PollResult(reached=False, failures=tuple(out.failures), missing=out.missing)
        return PollResult(
            readings=self._readings(out.values, now),
            reached=True,
            failures=tuple(out.failures),
            missing=out.missing,
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

    async def probe(self) -> list[str]:
        """Read every point of the profile once (every group, and the points no reading
        carries, such as relays), request by request as planned; a table of each point's
        value and unit, the request that read it and how long it took, or the exception. The
        points of a read the device refuses are read one by one, to show which it refuses.
        What a technician runs before leaving the building (``gateway check --connect``)."""
        requests = plan(
            [p.footprint() for p in self._profile.points],
            max_gap=self._max_gap,
            holes=self._holes,
            one_per_point=self._one_per_point,
            max_registers=self._profile.max_registers,
        )
        rows: list[tuple[str, ...]] = [("point", "value", "unit", "request", "time", "")]
        silent = ""
        for request in requests:
            if silent:
                rows += [(k, "-", "", _where(request), "", silent) for k in request.keys]
                continue
            started = time.monotonic()
            try:
                rows += await self._probe(request, split=True)
            except DeviceUnreachable as exc:
                took = _ms(started)
                silent = "not read: the device did not answer"
                rows += [
                    (k, "-", "", _where(request), took, self._short(exc)) for k in request.keys
                ]
        return _table(rows)

    def _short(self, exc: Exception) -> str:
        """The failure without the bus and the unit, which the probe's table shows apart."""
        text = str(exc)
        prefix = f"{self._bus.key} unit {self._unit} "
        return text.removeprefix(prefix).split(": ", 1)[-1] if text.startswith(prefix) else text

    async def _probe(self, request: Request, *, split: bool) -> list[tuple[str, ...]]:
        where = _where(request)
        started = time.monotonic()
        rows: list[tuple[str, ...]]
        try:
            words = await self._read_request(request)
        except (ModbusExceptionResponse, GarbledAnswer) as exc:
            took = _ms(started)
            refused = isinstance(exc, ModbusExceptionResponse) and _refusal(exc)
            if split and refused and len(request.keys) > 1:
                rows = [("", "", "", where, took, f"{self._short(exc)}: read point by point")]
                for key in request.keys:
                    spot = self._every_point[key].footprint()
                    alone = Request(spot.table, spot.address, spot.count, (key,))
                    rows += await self._probe(alone, split=False)
                return rows
            return [(k, "-", "", where, took, self._short(exc)) for k in request.keys]
        took = _ms(started)
        rows = []
        for key, value in self._decode(request, words).items():
            point = self._every_point[key]
            if isinstance(value, NoValue):
                rows.append((key, "-", point.unit or "", where, took, value.reason))
            else:
                shown = f"{value:.6g}" if isinstance(value, float) else str(value)
                rows.append((key, shown, point.unit or "", where, took, ""))
            where = took = ""  # once per request
        return rows

    async def scan(
        self,
        *,
        within: float = 60.0,
        each: float = 0.2,
        units: Sequence[int] = SCAN_UNITS,
        names: Mapping[int, str] | None = None,
    ) -> list[str]:
        """Which unit ids answer on this device's bus: one read of holding register 0 to each
        (any answer counts, an exception too), waiting ``each`` seconds, no retry; stops
        after ``within`` seconds. ``names`` (unit id -> device id) marks the configured
        units, and a configured unit that did not answer."""
        names = names or {}
        pacing = Pacing(
            timeout=each,
            pause_between_requests=self._pacing.pause_between_requests,
            retry=False,
        )
        lines: list[str] = []
        answered: set[int] = set()
        scanned: list[int] = []
        stopped = ""
        started = time.monotonic()
        for unit in units:
            if time.monotonic() - started >= within:
                stopped = (
                    f"time limit of {within:g} s reached: units {unit}..{units[-1]} not scanned"
                )
                break
            scanned.append(unit)
            try:
                await self._bus.read(
                    unit=unit, table=Table.HOLDING, address=0, count=1, pacing=pacing
                )
                answer = "answers"
            except ModbusExceptionResponse as exc:
                answer = f"answers ({str(exc).rsplit(': ', 1)[-1]} to holding 0)"
            except GarbledAnswer:
                answer = "answers garbled (two units on one id, or another baud rate?)"
            except DeviceUnreachable as exc:
                if "cannot" in str(exc):  # the port or the gateway is not there at all
                    stopped = str(exc)
                    break
                continue
            answered.add(unit)
            known = f" ({names[unit]})" if unit in names else " (not in the config)"
            lines.append(f"unit {unit}: {answer}{known}")
        lines += [
            f"unit {unit}: NO ANSWER ({names[unit]} is configured there)"
            for unit in scanned
            if unit in names and unit not in answered
        ]
        lines += [stopped] * bool(stopped)
        lines.append(f"{len(scanned)} unit ids scanned in {time.monotonic() - started:.1f} s")
        return lines

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
