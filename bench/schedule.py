"""Plan a year of opening hours for 40 branches: mode changes and planned actions.

.venv/bin/python bench/schedule.py [--branches 40] [--year 2027]
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from tqdm import tqdm

from edge.calendar import Calendar, OpeningHours
from edge.policy import ClosingPolicy, planned_actions

CPH = ZoneInfo("Europe/Copenhagen")


def branch_hours(rng: random.Random, year: int) -> OpeningHours:
    """Varied, realistic hours: staffed cores, self-service mornings and evenings."""

    def day(open_h: int, staffed: tuple[int, int] | None, close_h: int) -> list[dict[str, str]]:
        if staffed is None:
            return [
                {"start": f"{open_h:02d}:00", "end": f"{close_h:02d}:00", "mode": "self_service"}
            ]
        a, b = staffed
        return [
            {"start": f"{open_h:02d}:00", "end": f"{a:02d}:00", "mode": "self_service"},
            {"start": f"{a:02d}:00", "end": f"{b:02d}:00", "mode": "staffed"},
            {"start": f"{b:02d}:00", "end": f"{close_h:02d}:00", "mode": "self_service"},
        ]

    weekday = day(
        rng.choice((7, 8)), (rng.choice((9, 10)), rng.choice((15, 16, 17))), rng.choice((21, 22))
    )
    exceptions = [
        {
            "date": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "closed": True,
            "reason": "staff day",
        }
        for _ in range(rng.randint(0, 3))
    ]
    unique = {e["date"]: e for e in exceptions}
    return OpeningHours.model_validate(
        {
            "weekly": {
                "mon": weekday,
                "tue": weekday,
                "wed": weekday,
                "thu": day(8, (10, 19), 22),
                "fri": weekday,
                "sat": day(8, (10, 14), 20),
                "sun": day(10, None, 20) if rng.random() < 0.7 else [],
            },
            "holidays": {"dec_31": rng.choice(("closed", "normal"))},
            "exceptions": list(unique.values()),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=40)
    parser.add_argument("--year", type=int, default=2027)
    args = parser.parse_args()
    rng = random.Random(40)
    calendars = [Calendar(branch_hours(rng, args.year), CPH) for _ in range(args.branches)]
    start = datetime(args.year, 1, 1, tzinfo=CPH)
    end = datetime(args.year + 1, 1, 1, tzinfo=CPH)
    policy = ClosingPolicy()
    t0 = time.perf_counter()
    transitions = actions = 0
    for calendar in tqdm(calendars, desc="planning", unit="branch", leave=False):
        changes = calendar.transitions(start, end)
        transitions += len(changes)
        actions += len(planned_actions(changes, policy))
    elapsed = time.perf_counter() - t0
    print(
        f"{args.branches} branches x {args.year}: {transitions:,} mode changes, "
        f"{actions:,} planned actions in {elapsed:.2f} s "
        f"({transitions / elapsed:,.0f} transitions/s)"
    )


if __name__ == "__main__":
    main()
