"""The search that splits a refused read (``healing.search``), against tables of devices that
refuse some registers, reads across a boundary, or reads longer than they answer; and the
healing loop with the planner, over random devices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openbranch.integrations.modbus import healing
from openbranch.integrations.modbus.planner import Cut, Footprint, Request, lower_bound, plan
from openbranch.integrations.modbus.register import Table

H = Table.HOLDING


@dataclass(frozen=True)
class Oracle:
    """A device: which reads of holding registers it answers."""

    refused: frozenset[int] = frozenset()  # registers it will not serve
    longest: int = 125  # the most registers it answers at once (exception 3 above)
    boundaries: frozenset[int] = frozenset()  # no read may hold both b - 1 and b

    def answers(self, read: Request) -> bool:
        span = range(read.address, read.address + read.count)
        return (
            read.count <= self.longest
            and not any(a in self.refused for a in span)
            and not any(read.address < b <= read.end for b in self.boundaries)
        )


def points(*layout: tuple[str, int, int]) -> dict[str, Footprint]:
    return {key: Footprint(key, H, address, count) for key, address, count in layout}


def row(n: int, count: int = 2, start: int = 0, gap: int = 0) -> dict[str, Footprint]:
    """``n`` points of ``count`` registers from ``start``, ``gap`` unused registers apart."""
    return points(*((f"p{i}", start + i * (count + gap), count) for i in range(n)))


def whole(footprints: dict[str, Footprint]) -> Request:
    (request,) = plan(list(footprints.values()))
    return request


def run(search: healing.Search, oracle: Oracle) -> healing.Finding:
    try:
        read = next(search)
        while True:
            read = search.send(oracle.answers(read))
    except StopIteration as stop:
        finding: healing.Finding = stop.value
        return finding


CASES = [
    # (name, points, device, refused, cuts, reads)
    ("one refused point of 8", row(8), Oracle(refused=frozenset({9})), ("p4",), (), 6),
    ("the first of 8", row(8), Oracle(refused=frozenset({0})), ("p0",), (), 6),
    ("the last of 8", row(8), Oracle(refused=frozenset({15})), ("p7",), (), 6),
    (
        "two refused points of 16",
        row(16),
        Oracle(refused=frozenset({6, 24})),
        ("p3", "p12"),
        (),
        14,  # 2 for the halves of 16, then 4 per level down to single points
    ),
    (
        "all four refused",
        row(4),
        Oracle(refused=frozenset(range(8))),
        ("p0", "p1", "p2", "p3"),
        (),
        6,
    ),
    ("a refused register in a gap", row(4, 1, gap=1), Oracle(refused=frozenset({3})), (), (4,), 2),
    ("longer than it answers (exc. 3)", row(20, 1), Oracle(longest=11), (), (10,), 2),
    ("a block boundary", row(20, 1, start=40), Oracle(boundaries=frozenset({50})), (), (50,), 2),
    (
        "a boundary off the middle",
        row(8, 1),
        Oracle(boundaries=frozenset({2})),
        (),
        (2,),
        4,  # [0-3] no: [0,1] yes, [2,3] yes -> cut at 2; [4-7] yes
    ),
    (
        "a refused point and a boundary",  # the boundary shows once p1 is out: next round
        row(8),
        Oracle(refused=frozenset({2}), boundaries=frozenset({8})),
        ("p1",),
        (),
        6,
    ),
]


@pytest.mark.parametrize(
    ("footprints", "oracle", "refused", "cuts", "reads"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_search_finds_what_the_device_refuses(
    footprints: dict[str, Footprint],
    oracle: Oracle,
    refused: tuple[str, ...],
    cuts: tuple[int, ...],
    reads: int,
) -> None:
    request = whole(footprints)
    assert not oracle.answers(request)
    finding = run(healing.search(request, footprints), oracle)
    assert finding.refused == refused
    assert finding.cuts == tuple(Cut(H, c) for c in cuts)
    assert finding.reads == reads
    assert all(oracle.answers(r) for r in finding.answered)
    answered = {k for r in finding.answered for k in r.keys}
    assert answered == set(footprints) - set(refused)  # every other point read once
    assert sum(len(r.keys) for r in finding.answered) == len(answered)


def test_a_single_point_is_refused_without_another_read() -> None:
    footprints = row(1)
    finding = run(healing.search(whole(footprints), footprints), Oracle(refused=frozenset({0})))
    assert finding == healing.Finding(refused=("p0",), reads=0)


def test_points_that_share_a_register_stay_together() -> None:
    footprints = points(("a", 5, 1), ("b", 5, 1), ("c", 6, 1))  # a and b: two bits of 5
    finding = run(healing.search(whole(footprints), footprints), Oracle(refused=frozenset({5})))
    assert finding.refused == ("a", "b")
    assert [r.keys for r in finding.answered] == [("c",)]
    assert finding.reads == 2


def test_learned_refused_points_are_holes_and_cuts_cuts() -> None:
    footprints = row(8)
    finding = run(healing.search(whole(footprints), footprints), Oracle(refused=frozenset({9})))
    learned = healing.Learned().plus(finding, "exception 2 (illegal data address)")
    assert learned and not healing.Learned()
    assert learned.refused == {"p4": "exception 2 (illegal data address)"}
    kept = [f for f in footprints.values() if f.key not in learned.refused]
    replanned = plan(kept, holes=learned.holes(footprints.values()), cuts=sorted(learned.cuts))
    assert [(r.address, r.count) for r in replanned] == [(0, 8), (10, 6)]


def heal(
    footprints: dict[str, Footprint], oracle: Oracle, max_gap: int
) -> tuple[tuple[Request, ...], healing.Learned, int]:
    """Poll until the plan holds: every refused read searched, the plan made again."""
    learned = healing.Learned()
    rounds = 0
    while True:
        kept = [f for f in footprints.values() if f.key not in learned.refused]
        requests = plan(
            kept,
            max_gap=max_gap,
            holes=learned.holes(footprints.values()),
            cuts=sorted(learned.cuts, key=lambda c: c.address),
        )
        refused = [r for r in requests if not oracle.answers(r)]
        if not refused:
            return requests, learned, rounds
        rounds += 1
        for request in refused:
            learned = learned.plus(run(healing.search(request, footprints), oracle), "refused")


@st.composite
def devices(draw: st.DrawFn) -> tuple[dict[str, Footprint], Oracle, int]:
    sizes = draw(st.lists(st.sampled_from([1, 2, 4]), min_size=1, max_size=24))
    gaps = draw(st.lists(st.integers(0, 6), min_size=len(sizes), max_size=len(sizes)))
    layout, address = [], 0
    for i, (size, gap) in enumerate(zip(sizes, gaps, strict=True)):
        address += gap
        layout.append((f"p{i}", address, size))
        address += size
    refused = draw(st.frozensets(st.integers(0, address), max_size=4))
    longest = draw(st.sampled_from([4, 11, 125]))
    boundaries = draw(st.frozensets(st.integers(1, address + 1), max_size=3))
    return points(*layout), Oracle(refused, longest, boundaries), draw(st.integers(0, 8))


@settings(max_examples=300, deadline=None)
@given(devices())
def test_healing_settles_on_a_plan_the_device_answers(
    device: tuple[dict[str, Footprint], Oracle, int],
) -> None:
    footprints, oracle, max_gap = device
    requests, learned, rounds = heal(footprints, oracle, max_gap)
    alone = {
        k for k, f in footprints.items() if not oracle.answers(Request(H, f.address, f.count, (k,)))
    }
    assert set(learned.refused) == alone  # exactly the points the device refuses on their own
    assert {k for r in requests for k in r.keys} == set(footprints) - alone
    assert rounds <= len(footprints)  # each round learns a refused point or a cut
    kept = [f for f in footprints.values() if f.key not in alone]
    holes = learned.holes(footprints.values())
    cuts: Sequence[Cut] = sorted(learned.cuts, key=lambda c: c.address)
    assert len(requests) == lower_bound(kept, holes=holes, cuts=cuts, max_gap=max_gap)


def test_a_boundary_behind_a_refused_point_is_found_in_the_next_round() -> None:
    oracle = Oracle(refused=frozenset({2}), boundaries=frozenset({8}))
    requests, learned, rounds = heal(row(8), oracle, max_gap=0)
    assert rounds == 2
    assert set(learned.refused) == {"p1"} and learned.cuts == {Cut(H, 8)}
    assert [(r.address, r.count) for r in requests] == [(0, 2), (4, 4), (8, 8)]
