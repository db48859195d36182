"""Points in, requests out: gaps, holes, the 125-register and 2000-bit limits, mixed tables,
shared registers, the one-request-per-point escape hatch, and the planner against an independent
lower bound (itself checked against brute force) on generated layouts."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from openbranch.integrations.modbus.planner import (
    Cut,
    Footprint,
    Hole,
    Request,
    lower_bound,
    plan,
)
from openbranch.integrations.modbus.register import Table

IR, HR, CO, DI = Table.INPUT, Table.HOLDING, Table.COIL, Table.DISCRETE_INPUT
TABLE_ORDER = [CO, DI, HR, IR]
UNLIMITED = 65536


def pts(table: Table, *spans: tuple[int, int], prefix: str = "p") -> list[Footprint]:
    """Points named p<address> (or another prefix) from (address, count) pairs."""
    return [Footprint(f"{prefix}{a}", table, a, n) for a, n in spans]


def shape(requests: Sequence[Request]) -> list[tuple[Table, int, int]]:
    return [(r.table, r.address, r.count) for r in requests]


def assert_valid(
    points: Sequence[Footprint],
    requests: Sequence[Request],
    *,
    holes: Sequence[Hole] = (),
    max_gap: int | None = None,
    max_registers: int = 125,
    max_bits: int = 2000,
) -> None:
    """Every rule of a plan, checked from the outside."""
    by_key = {p.key: p for p in points}
    assert sorted(k for r in requests for k in r.keys) == sorted(by_key)  # each point once
    positions = [(TABLE_ORDER.index(r.table), r.address) for r in requests]
    assert positions == sorted(positions)
    for r in requests:
        end = r.address + r.count - 1
        assert 1 <= r.count <= (max_bits if r.table.is_bit else max_registers)
        assert not any(h.table is r.table and h.start <= end and r.address <= h.end for h in holes)
        members = [by_key[k] for k in r.keys]
        assert all(m.table is r.table for m in members)
        assert [m.address for m in members] == sorted(m.address for m in members)
        assert min(m.address for m in members) == r.address  # no register read for nothing
        assert max(m.address + m.count - 1 for m in members) == end
        if max_gap is not None:
            reach = members[0].address + members[0].count - 1
            for m in members[1:]:
                assert m.address - reach - 1 <= max_gap
                reach = max(reach, m.address + m.count - 1)


# (id, points, kwargs, expected (table, address, count) per request)
CASES: list[tuple[str, list[Footprint], dict[str, Any], list[tuple[Table, int, int]]]] = [
    ("empty", [], {}, []),
    ("contiguous", pts(IR, (0, 2), (2, 2), (4, 2)), {}, [(IR, 0, 6)]),
    ("gap-equal-max-gap-merged", pts(IR, (0, 2), (10, 2)), {"max_gap": 8}, [(IR, 0, 12)]),
    ("gap-over-max-gap-split", pts(IR, (0, 2), (11, 2)), {"max_gap": 8}, [(IR, 0, 2), (IR, 11, 2)]),
    ("max-gap-0-contiguous", pts(IR, (0, 2), (2, 2)), {"max_gap": 0}, [(IR, 0, 4)]),
    ("max-gap-0-gap-1", pts(IR, (0, 2), (2, 2), (5, 1)), {"max_gap": 0}, [(IR, 0, 4), (IR, 5, 1)]),
    ("default-gap-merges", pts(HR, (0, 2), (100, 2)), {}, [(HR, 0, 102)]),
    (
        "hole-splits-with-unlimited-gap",
        pts(IR, (0, 2), (10, 2)),
        {"holes": [Hole(IR, 4, 6)], "max_gap": UNLIMITED},
        [(IR, 0, 2), (IR, 10, 2)],
    ),
    (
        "hole-fills-the-gap",
        pts(IR, (0, 2), (10, 2)),
        {"holes": [Hole(IR, 2, 9)]},
        [(IR, 0, 2), (IR, 10, 2)],
    ),
    (
        "hole-of-one-register",
        pts(HR, (0, 1), (2, 1), (3, 1)),
        {"holes": [Hole(HR, 1, 1)]},
        [(HR, 0, 1), (HR, 2, 2)],
    ),
    ("hole-in-other-table", pts(IR, (0, 2), (10, 2)), {"holes": [Hole(HR, 4, 6)]}, [(IR, 0, 12)]),
    ("hole-elsewhere", pts(IR, (0, 2), (10, 2)), {"holes": [Hole(IR, 12, 99)]}, [(IR, 0, 12)]),
    ("125-uint16", pts(IR, *[(a, 1) for a in range(125)]), {}, [(IR, 0, 125)]),
    (
        "125-float32-and-uint16",
        pts(HR, *[(2 * i, 2) for i in range(62)], (124, 1)),
        {},
        [(HR, 0, 125)],
    ),
    (
        "126-as-63-float32",
        pts(IR, *[(2 * i, 2) for i in range(63)]),
        {},
        [(IR, 0, 124), (IR, 124, 2)],
    ),
    (
        "limit-counts-the-gap",
        pts(IR, (0, 2), (120, 4), (124, 2)),
        {},
        [(IR, 0, 124), (IR, 124, 2)],
    ),
    (
        "custom-register-limit",
        pts(HR, *[(2 * i, 2) for i in range(10)]),
        {"max_registers": 8},
        [(HR, 0, 8), (HR, 8, 8), (HR, 16, 4)],
    ),
    ("2000-coils", pts(CO, (0, 1), (1999, 1)), {"max_gap": 2000}, [(CO, 0, 2000)]),
    ("2001-coils", pts(CO, (0, 1), (2000, 1)), {"max_gap": 2000}, [(CO, 0, 1), (CO, 2000, 1)]),
    ("2000-inputs", pts(DI, *[(a, 1) for a in range(2000)]), {}, [(DI, 0, 2000)]),
    ("2001-inputs", pts(DI, *[(a, 1) for a in range(2001)]), {}, [(DI, 0, 2000), (DI, 2000, 1)]),
    ("bits-gap-default", pts(CO, (0, 1), (300, 1)), {}, [(CO, 0, 1), (CO, 300, 1)]),
    (
        "mixed-tables-never-merge",
        [*pts(IR, (0, 2)), *pts(HR, (2, 2)), *pts(DI, (0, 1), prefix="d"), *pts(CO, (5, 1))],
        {},
        [(CO, 5, 1), (DI, 0, 1), (HR, 2, 2), (IR, 0, 2)],
    ),
    (
        "same-address-two-tables",
        [*pts(IR, (10, 2), prefix="i"), *pts(HR, (10, 2), prefix="h")],
        {"max_gap": UNLIMITED},
        [(HR, 10, 2), (IR, 10, 2)],
    ),
    (
        "bits-share-a-register",
        [Footprint("b0", HR, 7, 1), Footprint("b3", HR, 7, 1), Footprint("x", HR, 8, 2)],
        {"max_gap": 0},
        [(HR, 7, 3)],
    ),
    (
        "bits-share-a-register-at-the-limit",
        [*pts(HR, (0, 124)), Footprint("b0", HR, 124, 1), Footprint("b1", HR, 124, 1)],
        {},
        [(HR, 0, 125)],
    ),
    (
        "overlapping-points",
        [Footprint("block", IR, 0, 10), Footprint("inside", IR, 4, 2), Footprint("tail", IR, 9, 3)],
        {"max_gap": 0},
        [(IR, 0, 12)],
    ),
    ("unsorted-input", pts(IR, (40, 2), (0, 2), (20, 2)), {}, [(IR, 0, 42)]),
    ("last-address", pts(HR, (65533, 2), (65535, 1)), {}, [(HR, 65533, 3)]),
    (
        "cut-between-adjacent-points",
        pts(IR, (0, 2), (2, 2)),
        {"cuts": [Cut(IR, 2)]},
        [(IR, 0, 2), (IR, 2, 2)],
    ),
    (
        "cut-in-a-gap",
        pts(IR, (0, 2), (6, 2), (8, 2)),
        {"cuts": [Cut(IR, 4)]},
        [(IR, 0, 2), (IR, 6, 4)],
    ),
    ("cut-of-another-table", pts(IR, (0, 2), (2, 2)), {"cuts": [Cut(HR, 2)]}, [(IR, 0, 4)]),
    (
        "cuts-and-a-hole",
        pts(HR, (0, 1), (1, 1), (2, 1), (10, 1), (20, 1)),
        {"cuts": [Cut(HR, 1), Cut(HR, 20)], "holes": [Hole(HR, 5, 6)]},
        [(HR, 0, 1), (HR, 1, 2), (HR, 10, 1), (HR, 20, 1)],
    ),
    (
        "one-per-point",
        pts(IR, (0, 2), (2, 2), (4, 2)),
        {"one_per_point": True},
        [(IR, 0, 2), (IR, 2, 2), (IR, 4, 2)],
    ),
    (
        "one-per-point-shared-register",
        [Footprint("b0", HR, 7, 1), Footprint("b3", HR, 7, 1), *pts(CO, (0, 1))],
        {"one_per_point": True},
        [(CO, 0, 1), (HR, 7, 1), (HR, 7, 1)],
    ),
]


@pytest.mark.parametrize(
    ("points", "kwargs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_plan(
    points: list[Footprint], kwargs: dict[str, Any], expected: list[tuple[Table, int, int]]
) -> None:
    requests = plan(points, **kwargs)
    assert shape(requests) == expected
    limits = {
        k: v for k, v in kwargs.items() if k in ("max_registers", "max_bits", "holes", "cuts")
    }
    checked = {k: v for k, v in limits.items() if k != "cuts"}
    assert_valid(points, requests, max_gap=kwargs.get("max_gap", 125), **checked)
    for cut in kwargs.get("cuts", []):
        assert not any(r.table is cut.table and r.address < cut.address <= r.end for r in requests)
    if not kwargs.get("one_per_point"):
        assert len(plan(points, max_gap=UNLIMITED, **limits)) == lower_bound(points, **limits)


def test_keys_in_address_order() -> None:
    (request,) = plan(pts(HR, (9, 1), (3, 2), (6, 1)))
    assert request.keys == ("p3", "p6", "p9")


def test_one_per_point_keys() -> None:
    requests = plan(pts(IR, (4, 2), (0, 2)), one_per_point=True)
    assert [r.keys for r in requests] == [("p0",), ("p4",)]


def test_deterministic_whatever_the_input_order() -> None:
    points, holes, _ = random_layout(random.Random(7))
    expected = plan(points, holes=holes)
    for seed in range(5):
        shuffled = list(points)
        random.Random(seed).shuffle(shuffled)
        assert plan(shuffled, holes=holes) == expected


@pytest.mark.parametrize(
    ("points", "kwargs", "message"),
    [
        (
            pts(IR, (5, 2)),
            {"holes": [Hole(IR, 6, 9)]},
            r"point p5 lies in the unreadable range 6\.\.9",
        ),
        (
            pts(IR, (5, 2)),
            {"holes": [Hole(IR, 0, 5)]},
            r"point p5 lies in the unreadable range 0\.\.5",
        ),
        (pts(CO, (3, 1)), {"holes": [Hole(CO, 3, 3)]}, "point p3 lies in the unreadable range"),
        (pts(IR, (0, 126)), {}, r"point p0: 126 input addresses exceed one request \(125\)"),
        (pts(CO, (0, 2001)), {}, r"point p0: 2001 coil addresses exceed one request \(2000\)"),
        (pts(HR, (0, 9)), {"max_registers": 8}, r"exceed one request \(8\)"),
        (pts(IR, (0, 0)), {}, "point p0: count 0 is below 1"),
        (pts(IR, (0, -2)), {}, "count -2 is below 1"),
        (pts(IR, (-1, 1)), {}, r"point p-1: addresses -1\.\.-1 are not in 0\.\.65535"),
        (pts(IR, (65535, 2)), {}, r"point p65535: addresses 65535\.\.65536 are not in 0\.\.65535"),
        (pts(IR, (0, 1)), {"holes": [Hole(IR, 9, 8)]}, r"hole input 9\.\.8 is not a range"),
        (pts(IR, (0, 1)), {"max_registers": 0}, "request limits must be at least 1"),
        (pts(IR, (4, 2)), {"cuts": [Cut(IR, 5)]}, "point p4 spans the cut at 5"),
        (pts(IR, (0, 1)), {"cuts": [Cut(IR, 0)]}, "cut input at 0 is not between two"),
    ],
    ids=[
        "inside-hole",
        "overlaps-hole",
        "coil-in-hole",
        "126-registers",
        "2001-bits",
        "custom-limit",
        "count-0",
        "count-negative",
        "negative-address",
        "past-65535",
        "hole-backwards",
        "limit-0",
        "point-across-a-cut",
        "cut-at-0",
    ],
)
def test_invalid_input_raises(
    points: list[Footprint], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plan(points, **kwargs)
    with pytest.raises(ValueError, match=message):
        lower_bound(points, **kwargs)


def test_negative_max_gap_raises() -> None:
    with pytest.raises(ValueError, match="max_gap -1 is below 0"):
        plan(pts(IR, (0, 1)), max_gap=-1)


def random_layout(
    rng: random.Random, tables: Sequence[Table] = TABLE_ORDER, most: int = 40
) -> tuple[list[Footprint], list[Hole], dict[str, int]]:
    """Points that sometimes share or overlap registers, gaps of every width, holes in gaps,
    and sometimes tight request limits."""
    limits = {"max_registers": rng.choice((125, 125, 10, 30)), "max_bits": rng.choice((2000, 40))}
    points: list[Footprint] = []
    holes: list[Hole] = []
    for table in tables:
        address, reach = rng.randrange(0, 50), -1
        for i in range(rng.randrange(0, most + 1)):
            count = rng.choice((1, 1, 8, 16) if table.is_bit else (1, 2, 2, 4, 10))
            if address + count > 65536:
                break
            points.append(Footprint(f"{table}-{i}", table, address, count))
            reach = max(reach, address + count - 1)
            move = rng.random()
            if move < 0.1:
                continue  # the next point shares this address
            if move < 0.2:
                address += 1  # the next point overlaps this one when it is longer than 1
                continue
            gap = rng.choice((0, 0, 1, 3, 10, 40, 130, 2100 if table.is_bit else 60))
            if gap > 3 and rng.random() < 0.4:
                holes.append(Hole(table, reach + 1 + rng.randrange(gap // 2), reach + gap))
            address = reach + 1 + gap
    return points, holes, limits


@pytest.mark.parametrize("seed", range(200))
def test_planner_reaches_the_lower_bound(seed: int) -> None:
    points, holes, limits = random_layout(random.Random(seed))
    unlimited = plan(points, max_gap=UNLIMITED, holes=holes, **limits)
    assert_valid(points, unlimited, holes=holes, **limits)
    assert len(unlimited) == lower_bound(points, holes=holes, **limits)
    for max_gap in (0, 5, 125):  # a gap limit can only cost requests, never save them
        gapped = plan(points, max_gap=max_gap, holes=holes, **limits)
        assert_valid(points, gapped, holes=holes, max_gap=max_gap, **limits)
        assert len(gapped) >= len(unlimited)
        assert len(gapped) == lower_bound(points, holes=holes, max_gap=max_gap, **limits)
    single = plan(points, holes=holes, one_per_point=True, **limits)
    assert shape(single) == sorted(
        ((p.table, p.address, p.count) for p in points),
        key=lambda s: (TABLE_ORDER.index(s[0]), s[1], s[2]),
    )


def partitions(items: list[Footprint]) -> Iterator[list[list[Footprint]]]:
    """Every way to split ``items`` into groups."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in partitions(rest):
        for i in range(len(partition)):
            yield [*partition[:i], [first, *partition[i]], *partition[i + 1 :]]
        yield [[first], *partition]


def brute_force(points: list[Footprint], holes: list[Hole], limits: dict[str, int]) -> int:
    """The fewest requests over every grouping of the points: no assumption about order."""

    def readable(group: list[Footprint]) -> bool:
        table = group[0].table
        start = min(p.address for p in group)
        end = max(p.address + p.count - 1 for p in group)
        limit = limits["max_bits"] if table.is_bit else limits["max_registers"]
        return (
            all(p.table is table for p in group)
            and end - start + 1 <= limit
            and not any(h.table is table and h.start <= end and start <= h.end for h in holes)
        )

    return min(len(p) for p in partitions(points) if all(readable(g) for g in p))


@pytest.mark.parametrize("seed", range(60))
def test_lower_bound_is_the_true_minimum(seed: int) -> None:
    rng = random.Random(1000 + seed)
    points, holes, _ = random_layout(rng, tables=[rng.choice(TABLE_ORDER)], most=7)
    limits = {"max_registers": rng.choice((4, 8, 20)), "max_bits": rng.choice((16, 30))}
    points = [p for p in points if p.count <= min(limits.values())]
    assert lower_bound(points, holes=holes, **limits) == brute_force(points, holes, limits)
