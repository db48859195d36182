"""Plan a year of opening hours for a fleet of branches: mode changes, lookups, actions.

    .venv/bin/python bench/schedule.py [--branches 40] [--year 2027] [--seed 40]

Each branch gets realistic, varied hours (a main library with self-service mornings and
evenings, neighbourhood branches that are mostly self-service, citizen-service desks that are
only staffed), its own holiday policy, a few dated exceptions, and the municipality's closing
days. The benchmark times ``Calendar.transitions`` over the whole year for every branch (fresh
calendars, no warm day cache), then ``Calendar.mode_at`` at random instants, then turning the
transitions into planned actions (``edge.policy``).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from openbranch.edge.core.schedule import ClosingPolicy, OpeningHours
from openbranch.edge.hours.calendar import Calendar
from openbranch.edge.hours.policy import planned_actions

CPH = ZoneInfo("Europe/Copenhagen")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def span(start: int, end: int, mode: str) -> dict[str, str]:
    return {"start": f"{start:02d}:00", "end": f"{end:02d}:00", "mode": mode}


def day(open_h: int, staffed: tuple[int, int] | None, close_h: int) -> list[dict[str, str]]:
    """Self-service from ``open_h`` to ``close_h`` around an optional staffed core."""
    if staffed is None:
        return [span(open_h, close_h, "self_service")]
    a, b = staffed
    out = [span(a, b, "staffed")]
    if open_h < a:
        out.append(span(open_h, a, "self_service"))
    if b < close_h:
        out.append(span(b, close_h, "self_service"))
    return out


def main_library(rng: random.Random) -> dict[str, Any]:
    weekday = day(rng.choice((7, 8)), (10, rng.choice((17, 18, 19))), rng.choice((21, 22)))
    late = day(7, (10, 20), 24)  # one late night a week, self-service to midnight
    return {
        **dict.fromkeys(WEEKDAYS, weekday),
        rng.choice(WEEKDAYS): late,
        "sat": day(8, (10, rng.choice((14, 15))), 20),
        "sun": day(rng.choice((8, 10)), (12, 16) if rng.random() < 0.5 else None, 20),
    }


def neighbourhood(rng: random.Random) -> dict[str, Any]:
    staffed_days = rng.sample(WEEKDAYS, rng.choice((2, 3)))
    out: dict[str, Any] = {d: day(7, (14, 18) if d in staffed_days else None, 22) for d in WEEKDAYS}
    out["sat"] = day(8, (10, 13) if rng.random() < 0.3 else None, 18)
    if rng.random() < 0.7:
        out["sun"] = day(8, None, 18)
    return out


def citizen_service(rng: random.Random) -> dict[str, Any]:
    close = rng.choice((15, 16))
    out: dict[str, Any] = {d: [span(9, close, "staffed")] for d in WEEKDAYS}
    out["thu"] = [span(9, 18, "staffed")]
    out["fri"] = [span(9, 13, "staffed")]
    return out


def holiday_policy(rng: random.Random) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "dec_24": rng.choice(("closed", [span(8, 12, "self_service")])),
        "dec_31": rng.choice(("closed", "normal", [span(8, 13, "self_service")])),
        "june_5": rng.choice(("normal", "closed", [span(8, 12, "self_service")])),
        "may_1": rng.choice(("normal", "normal", "closed")),
    }
    if rng.random() < 0.25:  # open library on public holidays, unstaffed
        policy["public"] = [span(10, 16, "self_service")]
    return policy


def exceptions(rng: random.Random, year: int) -> list[dict[str, Any]]:
    """A few dated exceptions: staff days, evening events, reduced summer hours."""
    days = sorted({date(year, rng.randint(1, 12), rng.randint(1, 28)) for _ in range(5)})
    out: list[dict[str, Any]] = []
    for d in days[: rng.randint(0, 5)]:
        kind = rng.choice(("staff day", "event", "summer"))
        if kind == "staff day":
            out.append({"date": d.isoformat(), "closed": True, "reason": "staff training"})
        elif kind == "event":
            intervals = day(8, (10, 23), 24)
            out.append({"date": d.isoformat(), "intervals": intervals, "reason": "author evening"})
        else:
            out.append({"date": d.isoformat(), "intervals": day(8, None, 16), "reason": "summer"})
    return out


def municipality_closures(year: int) -> list[dict[str, str]]:
    return [
        {"date": f"{year}-01-02", "reason": "municipal closing day"},
        {"date": f"{year}-08-14", "reason": "municipal staff day"},
    ]


KINDS: tuple[Callable[[random.Random], dict[str, Any]], ...] = (
    main_library,
    neighbourhood,
    neighbourhood,
    citizen_service,
)


def branch_hours(rng: random.Random, year: int) -> OpeningHours:
    return OpeningHours.model_validate(
        {
            "weekly": rng.choice(KINDS)(rng),
            "holidays": holiday_policy(rng),
            "exceptions": exceptions(rng, year),
            "municipality_closures": municipality_closures(year),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--branches", type=int, default=40)
    parser.add_argument("--year", type=int, default=2027)
    parser.add_argument("--seed", type=int, default=40)
    parser.add_argument("--lookups", type=int, default=2000, help="mode_at calls per branch")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    fleet = [branch_hours(rng, args.year) for _ in range(args.branches)]
    start = datetime(args.year, 1, 1, tzinfo=CPH)
    end = datetime(args.year + 1, 1, 1, tzinfo=CPH)
    days = (end.date() - start.date()).days

    t0 = time.perf_counter()
    plans = [Calendar(hours, CPH).transitions(start, end) for hours in fleet]
    plan_s = time.perf_counter() - t0
    transitions = sum(len(p) for p in plans)

    instants = [
        start + timedelta(seconds=rng.uniform(0, days * 86400)) for _ in range(args.lookups)
    ]
    t0 = time.perf_counter()
    for hours in fleet:
        calendar = Calendar(hours, CPH)
        for instant in instants:
            calendar.mode_at(instant)
    lookup_s = time.perf_counter() - t0
    lookups = args.lookups * len(fleet)

    policy = ClosingPolicy()
    t0 = time.perf_counter()
    actions = sum(len(planned_actions(p, policy)) for p in plans)
    action_s = time.perf_counter() - t0

    print(f"{args.branches} branches x {days} days of {args.year} (Europe/Copenhagen)")
    print(
        f"  transitions : {transitions:,} in {plan_s:.3f} s = {transitions / plan_s:,.0f}/s "
        f"({plan_s / args.branches * 1000:.1f} ms per branch-year)"
    )
    print(f"  mode_at     : {lookups:,} lookups in {lookup_s:.3f} s = {lookups / lookup_s:,.0f}/s")
    print(f"  actions     : {actions:,} planned in {action_s:.3f} s = {actions / action_s:,.0f}/s")


if __name__ == "__main__":
    main()
