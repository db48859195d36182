"""Points to the fewest read requests. A pure function, table-tested.

Rules: a request reads one table; it never exceeds ``max_registers`` (register tables) or
``max_bits`` (coils and discrete inputs); it never covers an address in a hole (the device
refuses to read there) nor reads across a cut (the device refuses a read that spans it, such
as the boundary between two of its register blocks); it merges two consecutive points only
when the unread gap between them is at most ``max_gap``; a point is never split, and points
that share addresses (two BITS points of one register) land in the same request.
``one_per_point`` is the escape hatch for devices that reject multi-point reads.

Greedy left-to-right is optimal: by induction, its k-th request ends at or after the k-th
request of any plan (points taken in address order). Greedy closes a request before point p
either because the gap before p is too wide, and then no request can hold p with any earlier
point of greedy's request (none of them ends later than the request does), or because p ends
past every earlier point (only a larger end can break the size limit, reach a hole or cross a
cut); then dropping the earlier points from any request that holds p keeps it valid (its span
shrinks and they bridged no later gap), so greedy's next request, starting at p, reaches as
far as any.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from openbranch.integrations.modbus.register import Table

__all__ = [
    "MAX_BITS",
    "MAX_REGISTERS",
    "Cut",
    "Footprint",
    "Hole",
    "Request",
    "lower_bound",
    "plan",
]

MAX_REGISTERS = 125  # FC 3 / 4: at most 125 registers per request
MAX_BITS = 2000  # FC 1 / 2: at most 2000 bits per request
_ADDRESSES = 65536
_TABLE_ORDER = (Table.COIL, Table.DISCRETE_INPUT, Table.HOLDING, Table.INPUT)


@dataclass(frozen=True, slots=True)
class Footprint:
    """Where one point lives: ``count`` registers (or bits) of ``table`` from ``address``."""

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
class Cut:
    """No request of ``table`` may read both ``address - 1`` and ``address``."""

    table: Table
    address: int


@dataclass(frozen=True, slots=True)
class Request:
    """One read: ``count`` registers (or bits) of ``table`` from ``address``, for ``keys``."""

    table: Table
    address: int
    count: int
    keys: tuple[str, ...]  # the points it covers, in address order

    @property
    def end(self) -> int:
        """Last address, inclusive."""
        return self.address + self.count - 1


def _limits(max_registers: int, max_bits: int) -> dict[Table, int]:
    if max_registers < 1 or max_bits < 1:
        raise ValueError(f"request limits must be at least 1, got {max_registers}, {max_bits}")
    return {t: max_bits if t.is_bit else max_registers for t in Table}


def _validate(
    points: Sequence[Footprint],
    holes: Sequence[Hole],
    limits: dict[Table, int],
    cuts: Sequence[Cut] = (),
) -> None:
    for h in holes:
        if not 0 <= h.start <= h.end < _ADDRESSES:
            raise ValueError(f"hole {h.table} {h.start}..{h.end} is not a range in 0..65535")
    for c in cuts:
        if not 0 < c.address < _ADDRESSES:
            raise ValueError(f"cut {c.table} at {c.address} is not between two of 0..65535")
    for p in points:
        if p.count < 1:
            raise ValueError(f"point {p.key}: count {p.count} is below 1")
        if p.address < 0 or p.end >= _ADDRESSES:
            raise ValueError(f"point {p.key}: addresses {p.address}..{p.end} are not in 0..65535")
        if p.count > limits[p.table]:
            raise ValueError(
                f"point {p.key}: {p.count} {p.table} addresses exceed one request"
                f" ({limits[p.table]})"
            )
        for h in holes:
            if h.table is p.table and p.address <= h.end and h.start <= p.end:
                raise ValueError(f"point {p.key} lies in the unreadable range {h.start}..{h.end}")
        for c in cuts:
            if c.table is p.table and p.address < c.address <= p.end:
                raise ValueError(f"point {p.key} spans the cut at {c.address}")


def _in_table(points: Sequence[Footprint], table: Table) -> list[Footprint]:
    """The table's points in address order (then end, then key: deterministic)."""
    return sorted((p for p in points if p.table is table), key=lambda p: (p.address, p.end, p.key))


def plan(
    points: Sequence[Footprint],
    *,
    max_gap: int = MAX_REGISTERS,
    holes: Sequence[Hole] = (),
    one_per_point: bool = False,
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
    cuts: Sequence[Cut] = (),
) -> tuple[Request, ...]:
    """The read requests that cover ``points``, sorted by table (coil, discrete input,
    holding, input) and address.

    Raises ValueError for a point that no request can read: count below 1, addresses outside
    0..65535, more addresses than one request allows, inside a hole, or across a cut.
    """
    limits = _limits(max_registers, max_bits)
    _validate(points, holes, limits, cuts)
    if max_gap < 0:
        raise ValueError(f"max_gap {max_gap} is below 0")
    requests: list[Request] = []
    for table in _TABLE_ORDER:
        ordered = _in_table(points, table)
        if one_per_point:
            requests.extend(Request(table, p.address, p.count, (p.key,)) for p in ordered)
            continue
        table_holes = [h for h in holes if h.table is table]
        table_cuts = [c.address for c in cuts if c.table is table]
        keys: list[str] = []
        start = end = 0
        for p in ordered:
            if keys:
                new_end = max(end, p.end)
                fits = (
                    p.address - end - 1 <= max_gap
                    and new_end - start + 1 <= limits[table]
                    and not any(start <= h.end and h.start <= new_end for h in table_holes)
                    and not any(start < c <= new_end for c in table_cuts)
                )
                if fits:
                    keys.append(p.key)
                    end = new_end
                    continue
                requests.append(Request(table, start, end - start + 1, tuple(keys)))
            keys, start, end = [p.key], p.address, p.end
        if keys:
            requests.append(Request(table, start, end - start + 1, tuple(keys)))
    return tuple(requests)


def _reach(address: int, limit: int, stops: list[int]) -> int:
    """The last address a request starting at ``address`` may read: as far as the size limit
    allows, and short of the next stop, a hole's start or a cut (a point's address lies in no
    hole, and a cut at the address itself does not stop a request that starts there)."""
    k = bisect.bisect_right(stops, address)
    next_stop = stops[k] if k < len(stops) else _ADDRESSES
    return min(address + limit, next_stop) - 1


def lower_bound(
    points: Sequence[Footprint],
    *,
    holes: Sequence[Hole] = (),
    max_gap: int | None = None,
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
    cuts: Sequence[Cut] = (),
) -> int:
    """The fewest requests that can cover ``points`` under the size limits, the holes and the
    cuts,
    merging across gaps of at most ``max_gap`` unread addresses (any width when None): what
    ``plan`` must reach with the same ``max_gap``.

    Computed apart from ``plan``, by dynamic programming over each table's points in address
    order: ``best[i]``, the fewest requests for the first i points, is the least
    ``best[j] + 1`` over the runs j..i-1 whose span stays within the reach of point j.
    """
    limits = _limits(max_registers, max_bits)
    _validate(points, holes, limits, cuts)
    total = 0
    for table in _TABLE_ORDER:
        ordered = _in_table(points, table)
        stops = sorted(
            [h.start for h in holes if h.table is table]
            + [c.address for c in cuts if c.table is table]
        )
        reach = [_reach(p.address, limits[table], stops) for p in ordered]
        best = [0] * (len(ordered) + 1)  # best[i]: fewest requests for the first i points
        for i in range(1, len(ordered) + 1):
            span_end = -1
            best[i] = len(ordered)
            for j in range(i - 1, -1, -1):  # the last request reads points j..i-1
                span_end = max(span_end, ordered[j].end)
                if span_end > reach[j]:
                    break  # starting further left only spans more
                if max_gap is not None and not _gaps_within(ordered[j:i], max_gap):
                    continue  # a longer run may bridge the gap with a longer point
                best[i] = min(best[i], best[j] + 1)
        total += best[-1]
    return total


def _gaps_within(run: Sequence[Footprint], max_gap: int) -> bool:
    """Whether no unread stretch inside ``run`` (in address order) is wider than ``max_gap``."""
    covered = run[0].end
    for point in run[1:]:
        if point.address - covered - 1 > max_gap:
            return False
        covered = max(covered, point.end)
    return True
