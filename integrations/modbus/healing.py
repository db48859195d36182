"""A coalesced read that the device refused, split to find what it refuses. Pure, table-tested.

A device answers a read of several points with exception 2 (illegal data address) or 3
(illegal data value), or with fewer registers than asked, when some address in the read is
one it will not serve, or when it will not take the read as a whole (a read across two of its
register blocks, or longer than it answers at once). ``search`` finds out by halving the read
at point boundaries (points that share a register stay together):

- a half that is answered is good, and its points have their values at once;
- a half that is refused is halved again, down to a single point: that point is *refused*;
- when both halves of a refused read are answered, the read fails only as a whole: a *cut*
  between the halves keeps later reads from spanning it.

Each refused point costs about two reads per halving (2·log2 n for one refused point among n);
every search learns at least one new refused point or cut, so a device's plan settles after at
most as many searches as it has points. ``Learned`` holds what was found; the device plans
again around it: its refused points become holes, its cuts cuts, and every other point is read
in as few requests as before (``planner.plan``).

The search is a generator that yields the read to send next and is sent back whether the
device answered it, so it runs under asyncio in the device and under a table in the tests.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from openbranch.integrations.modbus.planner import Cut, Footprint, Hole, Request
from openbranch.integrations.modbus.register import Table

__all__ = ["Finding", "Learned", "Search", "search"]

Search = Generator[Request, bool, "Finding"]
"""Yields the next read to try; send True when the device answered it, False when it refused."""


@dataclass(frozen=True, slots=True)
class Finding:
    """What one search found out about a refused read."""

    refused: tuple[str, ...] = ()  # points refused even when read alone
    cuts: tuple[Cut, ...] = ()  # reads must not span these: both sides answered, the whole not
    answered: tuple[Request, ...] = ()  # reads the device answered during the search
    reads: int = 0  # reads the search sent


@dataclass(slots=True)
class _Found:
    refused: list[str] = field(default_factory=list)
    cuts: list[Cut] = field(default_factory=list)
    answered: list[Request] = field(default_factory=list)
    reads: int = 0


def _clusters(request: Request, footprints: Mapping[str, Footprint]) -> list[list[Footprint]]:
    """The request's points in address order, those that share addresses in one cluster."""
    points = sorted(
        (footprints[key] for key in request.keys), key=lambda p: (p.address, p.end, p.key)
    )
    clusters: list[list[Footprint]] = []
    end = -1
    for point in points:
        if clusters and point.address <= end:
            clusters[-1].append(point)
        else:
            clusters.append([point])
        end = max(end, point.end)
    return clusters


def _read(table: Table, clusters: Sequence[Sequence[Footprint]]) -> Request:
    points = [p for cluster in clusters for p in cluster]
    start = points[0].address
    end = max(p.end for p in points)
    return Request(table, start, end - start + 1, tuple(p.key for p in points))


def _halve(
    table: Table, clusters: Sequence[Sequence[Footprint]], found: _Found
) -> Generator[Request, bool, None]:
    """The read over ``clusters`` was refused: find out why."""
    if len(clusters) == 1:
        found.refused.extend(p.key for p in clusters[0])
        return
    middle = len(clusters) // 2
    halves = (clusters[:middle], clusters[middle:])
    answered = []
    for half in halves:
        read = _read(table, half)
        ok = yield read
        found.reads += 1
        answered.append(ok)
        if ok:
            found.answered.append(read)
        else:
            yield from _halve(table, half, found)
    if all(answered):
        found.cuts.append(Cut(table, halves[1][0][0].address))


def search(request: Request, footprints: Mapping[str, Footprint]) -> Search:
    """Find what the device refuses in ``request``, which it just refused.

    ``footprints`` holds (at least) the footprints of the request's points.
    """
    found = _Found()
    yield from _halve(request.table, _clusters(request, footprints), found)
    return Finding(
        refused=tuple(found.refused),
        cuts=tuple(found.cuts),
        answered=tuple(found.answered),
        reads=found.reads,
    )


@dataclass(frozen=True, slots=True)
class Learned:
    """What searches found about one device: refused points (with the reason) and cuts."""

    refused: Mapping[str, str] = field(default_factory=dict)
    cuts: frozenset[Cut] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.refused or self.cuts)

    def plus(self, finding: Finding, reason: str) -> Learned:
        return Learned(
            refused={**self.refused, **dict.fromkeys(finding.refused, reason)},
            cuts=self.cuts | set(finding.cuts),
        )

    def holes(self, footprints: Iterable[Footprint]) -> list[Hole]:
        """The registers of the refused points, as holes no read may cover."""
        return [Hole(p.table, p.address, p.end) for p in footprints if p.key in self.refused]
