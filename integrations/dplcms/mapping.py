"""DPL CMS instances -> the calendar's days, by the branch's category table.

Each local day of the range gets the intervals its instances give, through
``website_hours.categories`` (title -> mode, or ``ignore``). Where instances overlap (a site
that publishes "Åbent 08-20" and "Med betjening 10-16"), the more served mode wins each
minute: staffed over self-service over closed. An end time of ``00:00`` (after a later start)
is the end of the day, as DPL CMS answers an instance that runs to midnight. A day without
instances is closed.

Refused, with the instance named (index, date, times, category) and nothing imported: a
category not in the table, an instance of another branch, an end not after its start.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from openbranch.edge.core.imported import HoursSourceError, WebsiteHours
from openbranch.edge.core.schedule import DAY_MINUTES, Interval, Mode
from openbranch.integrations.dplcms.models import Instance

__all__ = ["RANK", "days_of"]

#: Which mode wins a minute that two instances cover.
RANK = {Mode.CLOSED: 0, Mode.SELF_SERVICE: 1, Mode.STAFFED: 2}


def _minute(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def days_of(
    found: Sequence[Instance], website: WebsiteHours, start: date, end: date, where: str
) -> dict[date, list[Interval]]:
    """Every day ``start``..``end`` with its intervals (see the module's docstring)."""
    minutes: dict[date, list[Mode]] = {
        start + timedelta(days=n): [Mode.CLOSED] * DAY_MINUTES
        for n in range((end - start).days + 1)
    }
    for i, item in enumerate(found):
        what = (
            f"{where}: [{i}] ({item.date} {item.start_time}-{item.end_time}, "
            f"{item.category.title!r})"
        )
        if item.branch_id != website.branch_id:
            raise HoursSourceError(f"{what}: branch_id {item.branch_id}, not {website.branch_id}")
        mode = website.categories.get(item.category.title)
        if mode is None:
            known = ", ".join(repr(t) for t in website.categories)
            raise HoursSourceError(
                f"{what}: category {item.category.title!r} is not in website_hours.categories "
                f"({known}); map it to a mode or to ignore: nothing imported"
            )
        if mode == "ignore" or item.date not in minutes:
            continue
        first, last = _minute(item.start_time), _minute(item.end_time)
        if last == 0 and first > 0:
            last = DAY_MINUTES
        if last <= first:
            raise HoursSourceError(f"{what}: the end is not after the start")
        day = minutes[item.date]
        for m in range(first, last):
            if RANK[Mode(mode)] > RANK[day[m]]:
                day[m] = Mode(mode)
    return {day: _intervals(profile) for day, profile in minutes.items()}


def _intervals(profile: list[Mode]) -> list[Interval]:
    out: list[Interval] = []
    start = 0
    for m in range(1, DAY_MINUTES + 1):
        if m == DAY_MINUTES or profile[m] is not profile[start]:
            if profile[start] is not Mode.CLOSED:
                out.append(
                    Interval(
                        start=_clock(start),
                        end="24:00" if m == DAY_MINUTES else _clock(m),
                        mode=profile[start],
                    )
                )
            start = m
    return out
