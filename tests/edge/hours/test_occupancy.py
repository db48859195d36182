"""Occupancy from a counter's running totals: a counter's reset keeps the balance, a negative
total is never taken (issue 13)."""

from __future__ import annotations

import pytest

from openbranch.edge.hours.engine import Occupancy


@pytest.mark.parametrize(
    ("updates", "net"),
    [
        pytest.param([(120, 98)], 22, id="one-count"),
        pytest.param([(120, 98), (3, 1)], 24, id="both-reset-at-midnight"),
        pytest.param([(120, 98), (125, 0)], 27, id="exit-count-reset"),
        pytest.param([(120, 98), (2, 100)], 22, id="entry-count-reset"),
        pytest.param([(120, 98), (-5, -1_000_000)], 22, id="negative-ignored"),
        pytest.param([(-5, 0)], 0, id="negative-first-ignored"),
        pytest.param([(10, 30)], -20, id="more-out-than-in-at-this-door"),
        pytest.param([(162, 163), (162, 161)], -1, id="an-older-exit-count-sent-again"),
        pytest.param([(298, 286), (296, 286), (299, 286)], 13, id="an-older-entry-count"),
        pytest.param([(298, 286), (12, 286)], 24, id="entry-reset-near-zero-still-a-reset"),
    ],
)
def test_occupancy(updates: list[tuple[int, int]], net: int) -> None:
    occupancy = Occupancy()
    for entered, exited in updates:
        occupancy.update(entered, exited)
    assert occupancy.net == net
    assert occupancy.present == max(0, net)


def test_a_reset_after_the_daily_correction_keeps_zero() -> None:
    occupancy = Occupancy()
    occupancy.update(500, 497)
    occupancy.reset()  # closed and verified empty: 3 counted in but not out
    occupancy.update(0, 0)  # the counter's own reset at midnight
    assert occupancy.present == 0
    occupancy.update(4, 1)
    assert occupancy.present == 3
