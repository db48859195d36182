"""What the website's hours would change in the calendar, which of those changes may be
applied, and the hours in the website's own shape (pure; the I/O is in the CLI).

A day is compared as a person reads it: minute by minute, which mode. The verdicts:

- a day the config decides itself (its own dated exception, a municipality closure, a holiday
  it closes) is never changed by an import: *held*, and when the website would open it, with a
  WARNING that says so (the config closes it, maybe for safety; a person changes the config);
- self-service that would end after ``website_hours.latest_self_service`` is *held* (manual and
  automatic apply alike), with a WARNING;
- ``hours apply --auto`` applies only reductions (every minute either closed or as before:
  closures and shortening) and only when ``website_hours.auto_apply`` is ``reductions``; the
  rest waits for a person's ``hours apply``.

``published`` writes the calendar as DPL CMS's opening hours instances (its REST API's
``/api/v1/opening_hours`` answer shape), so a branch whose hours are kept here can publish
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from openbranch.edge.core.imported import (
    MAX_CHANGES,
    HoursChange,
    ImportedHours,
    WebsiteAnswer,
    WebsiteHours,
)
from openbranch.edge.core.schedule import (
    DAY_MINUTES,
    DatedException,
    Interval,
    Mode,
    OpeningHours,
)
from openbranch.edge.hours.calendar import Calendar

__all__ = [
    "DEFAULT_CATEGORIES",
    "DayChange",
    "apply_changes",
    "compare",
    "day_text",
    "published",
]

Kind = Literal["closure", "shorter", "longer", "changed"]

#: DPL CMS's own category titles (its default taxonomy) and colours, for ``published``.
DEFAULT_CATEGORIES: dict[Mode, tuple[str, str]] = {
    Mode.STAFFED: ("Med betjening", "#2e7d32"),
    Mode.SELF_SERVICE: ("Selvbetjening", "#1565c0"),
}


@dataclass(frozen=True, slots=True)
class DayChange:
    """One local day the website's hours would change, and whether it may be applied."""

    date: date
    before: tuple[Interval, ...]
    after: tuple[Interval, ...]
    kind: Kind
    apply: bool
    held: tuple[str, ...] = ()  # why not applied
    warnings: tuple[str, ...] = field(default=())

    def lines(self) -> list[str]:
        """The day as `hours diff` shows it: the verdict, then the hours now and the website's."""
        verdict = "apply" if self.apply else "HELD, " + "; ".join(self.held)
        return [
            f"{self.date:%a %Y-%m-%d}  {self.kind}: {verdict}",
            f"  now      {day_text(self.before)}",
            f"  website  {day_text(self.after)}",
        ]


def day_text(intervals: Sequence[Interval]) -> str:
    """``10:00-16:00 staffed, 16:00-20:00 self_service``, or ``closed``."""
    ordered = sorted(intervals, key=lambda i: i.start_minute)
    return ", ".join(f"{i} {i.mode.value}" for i in ordered) or "closed"


def _profile(intervals: Sequence[Interval]) -> list[Mode]:
    minutes = [Mode.CLOSED] * DAY_MINUTES
    for i in intervals:
        minutes[i.start_minute : i.end_minute] = [i.mode] * (i.end_minute - i.start_minute)
    return minutes


def _within(small: list[Mode], large: list[Mode]) -> bool:
    """Every minute of ``small`` is closed or the same as in ``large``."""
    return all(s is Mode.CLOSED or s is g for s, g in zip(small, large, strict=True))


def _kind(before: list[Mode], after: list[Mode]) -> Kind:
    if all(m is Mode.CLOSED for m in after):
        return "closure"
    if _within(after, before):
        return "shorter"
    if _within(before, after):
        return "longer"
    return "changed"


def compare(
    *,
    own: OpeningHours,
    current: OpeningHours,
    answer: WebsiteAnswer,
    website: WebsiteHours,
    tz: str,
    auto: bool,
) -> list[DayChange]:
    """Every day of ``answer`` whose hours differ from ``current`` (the gateway's hours now:
    ``own``, the config's, with the imported exceptions laid in), with its verdict."""
    mine, now = Calendar(own, tz), Calendar(current, tz)
    latest = None
    if website.latest_self_service is not None:
        latest = Interval(start="00:00", end=website.latest_self_service, mode=Mode.STAFFED)
    out = []
    for day in sorted(answer.days):
        before = tuple(now.hours_of(day).intervals)
        after = tuple(answer.days[day])
        old, new = _profile(before), _profile(after)
        if old == new:
            continue
        kind = _kind(old, new)
        held: list[str] = []
        warnings: list[str] = []
        rule = mine.hours_of(day)
        if rule.source in ("exception", "municipality") or (
            rule.source == "holiday" and not rule.intervals
        ):
            held.append(f"the config decides this day ({rule.source}: {rule.reason})")
            if not _within(new, _profile(rule.intervals)):
                warnings.append(
                    f"WARNING {day}: the website opens {day_text(after)}, but this gateway's "
                    f"config closes it ({rule.reason}); not applied: change the config's "
                    "hours if the branch should open"
                )
        if latest is not None:
            late = [
                i for i in after if i.mode is Mode.SELF_SERVICE and i.end_minute > latest.end_minute
            ]
            if late:
                held.append(f"self-service past {latest.end} (website_hours.latest_self_service)")
                warnings.append(
                    f"WARNING {day}: the website has self-service {late[0]}, past the latest "
                    f"hour {latest.end}; not applied"
                )
        if auto and not held:
            if website.auto_apply == "nothing":
                held.append("website_hours.auto_apply is nothing: apply by hand")
            elif kind not in ("closure", "shorter"):
                held.append("not a closure or shortening: apply by hand (hours apply)")
        out.append(DayChange(day, before, after, kind, not held, tuple(held), tuple(warnings)))
    return out


def _exception(day: date, intervals: tuple[Interval, ...]) -> DatedException:
    if not intervals:
        return DatedException(date=day, closed=True, reason="closed on the website")
    return DatedException(date=day, intervals=list(intervals), reason="website hours")


def apply_changes(
    *,
    own: OpeningHours,
    previous: ImportedHours | None,
    answer: WebsiteAnswer,
    changes: Sequence[DayChange],
    tz: str,
    now: datetime,
    by: str,
) -> tuple[ImportedHours, list[HoursChange]]:
    """The imported hours after applying the ``changes`` marked ``apply``: each applied day
    is an exception unless the website's hours equal the config's own for that day; a held
    day, or one the website did not change, keeps what the previous import gave it; imported
    days after the answer's range are kept, those before it are dropped (past)."""
    mine = Calendar(own, tz)
    kept = {e.date: e for e in (previous.exceptions if previous else []) if e.date >= answer.start}
    applied = [c for c in changes if c.apply]
    for change in applied:
        kept.pop(change.date, None)
        if _profile(change.after) != _profile(mine.hours_of(change.date).intervals):
            kept[change.date] = _exception(change.date, change.after)
    seq = previous.last_seq if previous else 0
    log = [
        HoursChange(
            seq=seq + n,
            date=c.date,
            before=day_text(c.before),
            after=day_text(c.after),
            source=answer.source,
            fetched_at=answer.fetched_at,
            applied_at=now,
            by=by,
        )
        for n, c in enumerate(applied, start=1)
    ]
    result = ImportedHours(
        source=answer.source,
        branch_id=answer.branch_id,
        fetched_at=answer.fetched_at,
        start=answer.start,
        end=answer.end,
        exceptions=[kept[d] for d in sorted(kept)],
        changes=[*(previous.changes if previous else []), *log][-MAX_CHANGES:],
    )
    return result, log


def _clock(minute: int) -> str:
    """HH:MM as DPL CMS answers it: the end of the day (24:00) is 00:00 (its ``H:i``)."""
    minute %= DAY_MINUTES
    return f"{minute // 60:02d}:{minute % 60:02d}"


def published(
    calendar: Calendar,
    *,
    start: date,
    days: int,
    branch_id: int,
    categories: dict[str, str] | None = None,
) -> list[dict[str, object]]:
    """The calendar's hours for ``days`` local days from ``start`` as DPL CMS opening hours
    instances. ``categories`` (a website_hours table: title -> mode) names each mode by its
    first title there; else by DPL CMS's default titles. Every instance is its own
    repetition (``none``): the calendar's days are already resolved."""
    titles = {mode: title for mode, (title, _) in DEFAULT_CATEGORIES.items()}
    colours = {mode: colour for mode, (_, colour) in DEFAULT_CATEGORIES.items()}
    for title, mode in reversed(list((categories or {}).items())):
        if mode != "ignore":
            titles[Mode(mode)] = title
    out: list[dict[str, object]] = []
    for n in range(days):
        day = start + timedelta(days=n)
        for interval in sorted(calendar.hours_of(day).intervals, key=lambda i: i.start_minute):
            ident = len(out) + 1
            out.append(
                {
                    "id": ident,
                    "category": {
                        "title": titles.get(interval.mode, interval.mode.value),
                        "color": colours.get(interval.mode, "#757575"),
                    },
                    "date": day.isoformat(),
                    "start_time": _clock(interval.start_minute),
                    "end_time": _clock(interval.end_minute),
                    "branch_id": branch_id,
                    "repetition": {"id": ident, "type": "none"},
                }
            )
    return out
