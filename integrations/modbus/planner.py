"""Points to the fewest read requests. A pure function, table-tested.

Rules: a request reads one table; it never exceeds ``max_registers`` (register tables) or
``max_bits`` (coils and discrete inputs); it never covers an address in a hole (the device
refuses to read there); it merges two points only when the unread gap between them is at most
``max_gap``; a point is never split. ``one_per_point`` is the escape hatch for devices that
reject multi-point reads.

Greedy left-to-right is optimal: scanning points by address, the planner extends the current
request while the next point fits (limit, gap, hole), else starts a new one. Any plan must start
a request at the first point; extending it as far as possible leaves a suffix that is a subset
of what any other first request leaves, so it never needs more requests than that plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from integrations.modbus.register import Table

__all__ = ["MAX_BITS", "MAX_REGISTERS", "Footprint", "Hole", "Request", "lower_bound", "plan"]

MAX_REGISTERS = 125  # FC 3 / 4: 125 registers per request
MAX_BITS = 2000  # FC 1 / 2: 2000 bits per request
_TABLE_ORDER = (Table.COIL, Table.DISCRETE_INPUT, Table.HOLDING, Table.INPUT)


@dataclass(frozen=True, slots=True)
class Footprint:
    """Where one point lives."""

    key: str
    table: Table
    address: int
    count: int

    @property
    def end(self) -> int:
        """Last address, inclusive."""
        return self.address + self.count - 1


@dataclass(frozen=True, slots=True)
class Hole:
    """Addresses ``start..end`` (inclusive) of ``table`` that the device refuses to read."""

    table: Table
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Request:
    table: Table
    address: int
    count: int
    keys: tuple[str, ...]

    @property
    def end(self) -> int:
        return self.address + self.count - 1


def _limit(table: Table, max_registers: int, max_bits: int) -> int:
    return max_bits if table.is_bit else max_registers


def _validate(points: Sequence[Footprint], holes: Sequence[Hole], limits: dict[Table, int]) -> None:
    for p in points:
        if p.count < 1:
            raise ValueError(f"point {p.key}: count {p.count} is below 1")
        if p.address < 0 or p.end > 0xFFFF:
            raise ValueError(f"point {p.key}: addresses {p.address}..{p.end} are not in 0..65535")
        if p.count > limits[p.table]:
            raise ValueError(
                f"point {p.key}: {p.count} {p.table} addresses exceed one request"
                f" ({limits[p.table]})"
            )
        for h in holes:
            if h.table is p.table and p.address <= h.end and h.start <= p.end:
                raise ValueError(f"point {p.key} lies in the unreadable range {h.start}..{h.end}")


def _crosses_hole(table: Table, start: int, end: int, holes: Sequence[Hole]) -> bool:
    return any(h.table is table and start <= h.end and h.start <= end for h in holes)


def _sorted(points: Sequence[Footprint], table: Table) -> list[Footprint]:
    return sorted((p for p in points if p.table is table), key=lambda p: (p.address, p.end, p.key))


def plan(
    points: Sequence[Footprint],
    *,
    max_gap: int = MAX_REGISTERS,
    holes: Sequence[Hole] = (),
    one_per_point: bool = False,
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
) -> tuple[Request, ...]:
    """The read requests that cover ``points``, sorted by table and address."""
    limits = {t: _limit(t, max_registers, max_bits) for t in Table}
    _validate(points, holes, limits)
    if max_gap < 0:
        raise ValueError(f"max_gap {max_gap} is below 0")
    requests: list[Request] = []
    for table in _TABLE_ORDER:
        ordered = _sorted(points, table)
        if one_per_point:
            requests.extend(Request(table, p.address, p.count, (p.key,)) for p in ordered)
            continue
        current: list[Footprint] = []
        start = end = 0
        for p in ordered:
            if current:
                new_end = max(end, p.end)
                fits = (
                    new_end - start + 1 <= limits[table]
                    and p.address - end - 1 <= max_gap
                    and not _crosses_hole(table, start, new_end, holes)
                )
                if fits:
                    current.append(p)
                    end = new_end
                    continue
                requests.append(
                    Request(table, start, end - start + 1, tuple(c.key for c in current))
                )
            current, start, end = [p], p.address, p.end
        if current:
            requests.append(Request(table, start, end - start + 1, tuple(c.key for c in current)))
    return tuple(requests)


def lower_bound(
    points: Sequence[Footprint],
    *,
    holes: Sequence[Hole] = (),
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
) -> int:
    """The fewest requests that can cover ``points`` under the size limit and the holes.

    Computed independently of ``plan`` by dynamic programming over the points sorted by
    address: best[i] = fewest requests for the first i points, where the last request covers
    points j..i-1 if their span fits the limit and crosses no hole.
    """
    limits = {t: _limit(t, max_registers, max_bits) for t in Table}
    _validate(points, holes, limits)
    total = 0
    for table in _TABLE_ORDER:
        ordered = _sorted(points, table)
        best = [0] + [len(ordered) + 1] * len(ordered)
        for i in range(1, len(ordered) + 1):
            span_end = -1
            for j in range(i - 1, -1, -1):
                span_end = max(span_end, ordered[j].end)
                start = ordered[j].address
                if span_end - start + 1 > limits[table]:
                    break
                if not _crosses_hole(table, start, span_end, holes):
                    best[i] = min(best[i], best[j] + 1)
        total += best[len(ordered)]
    return total
