"""Points in, requests out: gaps, holes, the 125-register and 2000-bit limits, mixed tables,
the one-request-per-point escape hatch, and the planner against an independent lower bound."""

from __future__ import annotations

import random

import pytest

from integrations.modbus.planner import Footprint, Hole, lower_bound, plan
from integrations.modbus.register import Table

IR, HR, CO, DI = Table.INPUT, Table.HOLDING, Table.COIL, Table.DISCRETE_INPUT


def pts(table: Table, *spans: tuple[int, int]) -> list[Footprint]:
    """Points named p<address> from (address, count) pairs."""
    return [Footprint(f"p{a}", table, a, n) for a, n in spans]


def shape(requests: tuple) -> list[tuple[Table, int, int]]:
    return [(r.table, r.address, r.count) for r in requests]


CASES = [
    ("contiguous", pts(IR, (0, 2), (2, 2), (4, 2)), {}, [(IR, 0, 6)]),
    ("gap-within-limit", pts(IR, (0, 2), (10, 2)), {"max_gap": 8}, [(IR, 0, 12)]),
    ("gap-over-limit", pts(IR, (0, 2), (11, 2)), {"max_gap": 8}, [(IR, 0, 2), (IR, 11, 2)]),
    ("max-gap-zero", pts(IR, (0, 2), (2, 2), (5, 1)), {"max_gap": 0}, [(IR, 0, 4), (IR, 5, 1)]),
    (
        "hole-splits",
        pts(IR, (0, 2), (10, 2)),
        {"holes": [Hole(IR, 4, 6)]},
        [(IR, 0, 2), (IR, 10, 2)],
    ),
    (
        "hole-other-table",
        pts(IR, (0, 2), (10, 2)),
        {"holes": [Hole(HR, 4, 6)]},
        [(IR, 0, 12)],
    ),
    ("125-exact", pts(IR, *[(a, 1) for a in range(125)]), {}, [(IR, 0, 125)]),
    (
        "126-float32",
        pts(IR, *[(2 * i, 2) for i in range(63)]),
        {},
        [(IR, 0, 124), (IR, 124, 2)],
    ),
    (
        "limit-with-gap",
        pts(IR, (0, 2), (120, 4), (124, 2)),
        {},
        [(IR, 0, 124), (IR, 124, 2)],
    ),
    ("coils-2000", pts(CO, (0, 1), (1999, 1)), {"max_gap": 2000}, [(CO, 0, 2000)]),
    ("coils-2001", pts(CO, (0, 1), (2000, 1)), {"max_gap": 2000}, [(CO, 0, 1), (CO, 2000, 1)]),
    (
        "mixed-tables-never-merge",
        [*pts(IR, (0, 2)), *pts(HR, (2, 2)), *pts(DI, (0, 1)), *pts(CO, (5, 1))],
        {},
        [(CO, 5, 1), (DI, 0, 1), (HR, 2, 2), (IR, 0, 2)],
    ),
    (
        "bits-share-a-register",
        [Footprint("b0", HR, 7, 1), Footprint("b3", HR, 7, 1), Footprint("x", HR, 8, 2)],
        {},
        [(HR, 7, 3)],
    ),
    ("unsorted-input", pts(IR, (40, 2), (0, 2), (20, 2)), {}, [(IR, 0, 42)]),
    (
        "escape-hatch",
        pts(IR, (0, 2), (2, 2), (4, 2)),
        {"one_per_point": True},
        [(IR, 0, 2), (IR, 2, 2), (IR, 4, 2)],
    ),
]


@pytest.mark.parametrize(
    ("points", "kwargs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_plan(points: list[Footprint], kwargs: dict, expected: list) -> None:
    requests = plan(points, **kwargs)
    assert shape(requests) == expected
    covered = [k for r in requests for k in r.keys]
    assert sorted(covered) == sorted(p.key for p in points)  # every point exactly once
    for r in requests:
        assert r.count <= (2000 if r.table.is_bit else 125)


def test_keys_in_address_order() -> None:
    (request,) = plan(pts(HR, (9, 1), (3, 2), (6, 1)))
    assert request.keys == ("p3", "p6", "p9")


@pytest.mark.parametrize(
    ("points", "kwargs", "message"),
    [
        (pts(IR, (5, 2)), {"holes": [Hole(IR, 6, 9)]}, "p5 lies in the unreadable range 6..9"),
        (pts(IR, (0, 126)), {}, "exceed one request"),
        (pts(IR, (0, 0)), {}, "below 1"),
        (pts(IR, (65535, 2)), {}, "not in 0..65535"),
        (pts(IR, (-1, 1)), {}, "not in 0..65535"),
        (pts(IR, (0, 1)), {"max_gap": -1}, "max_gap"),
    ],
)
def test_invalid_input_raises(points: list[Footprint], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan(points, **kwargs)


def random_layout(rng: random.Random) -> tuple[list[Footprint], list[Hole]]:
    points: list[Footprint] = []
    holes: list[Hole] = []
    for table in (IR, HR, CO):
        address = rng.randrange(0, 50)
        for i in range(rng.randrange(0, 40)):
            count = 1 if table.is_bit else rng.choice((1, 2, 2, 4))
            points.append(Footprint(f"{table}-{i}", table, address, count))
            gap = rng.choice((0, 0, 1, 3, 10, 40, 130, 2100 if table.is_bit else 60))
            if gap > 3 and rng.random() < 0.3:
                holes.append(Hole(table, address + count, address + count + gap // 2))
            address += count + gap
    return points, holes


@pytest.mark.parametrize("seed", range(200))
def test_planner_reaches_the_lower_bound(seed: int) -> None:
    points, holes = random_layout(random.Random(seed))
    unlimited = plan(points, max_gap=65535, holes=holes)
    assert len(unlimited) == lower_bound(points, holes=holes)
    # a gap limit can only cost requests, never save them
    assert len(plan(points, max_gap=5, holes=holes)) >= len(unlimited)
    for r in unlimited:
        assert not any(
            h.table is r.table and r.address <= h.end and h.start <= r.end for h in holes
        )
