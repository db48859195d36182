"""A branch's hours as configuration data: the modes, the weekly pattern, holiday rules, dated
exceptions and closures (``OpeningHours``), the closing policy and the actuator map.

These are the models the gateway config and the fleet inventory embed (``hours:``,
``closing:``, ``actuators:``), validated by pydantic with located errors. What they mean at an
instant (the calendar, the engine, the reconciler) lives in ``edge.hours``; this module is data.
The YAML shape and the resolution rules are described in ``edge.hours.calendar``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from openbranch.edge.core import schema

__all__ = [
    "CALENDAR_MODES",
    "DAY_MINUTES",
    "OPTIONAL_DAYS",
    "WEEKDAYS",
    "Actuator",
    "ActuatorClass",
    "ClosingPolicy",
    "Closure",
    "DatedException",
    "DayRule",
    "HolidayPolicy",
    "Interval",
    "Mode",
    "OpeningHours",
    "Weekly",
]


class Mode(StrEnum):
    """A branch's mode; the values are the ``branch_mode`` measurement's ``mode`` choices."""

    CLOSED = "closed"
    STAFFED = "staffed"
    SELF_SERVICE = "self_service"
    EMERGENCY = "emergency"  # set by safety inputs only
    MAINTENANCE = "maintenance"  # set by people only


if [m.value for m in Mode] != list(schema.BRANCH_MODE_MODE.choices):
    raise ImportError(
        f"edge.core.schedule.Mode {[m.value for m in Mode]} differs from the schema's branch_mode "
        f"choices {list(schema.BRANCH_MODE_MODE.choices)}"
    )

#: The modes a calendar may schedule; the others are set by events and people.
CALENDAR_MODES: tuple[Mode, ...] = tuple(
    m for m in Mode if m not in (Mode.EMERGENCY, Mode.MAINTENANCE)
)

_MODE_VALUES = frozenset(m.value for m in Mode)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
DAY_MINUTES = 24 * 60

#: The optional Danish days: policy field -> (month, day, name). Written out here on purpose.
OPTIONAL_DAYS: Mapping[str, tuple[int, int, str]] = {
    "may_1": (5, 1, "Workers' Day"),
    "june_5": (6, 5, "Constitution Day"),
    "dec_24": (12, 24, "Christmas Eve"),
    "dec_31": (12, 31, "New Year's Eve"),
}


# --- configuration models ------------------------------------------------------------------


_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


def _clock_time(value: object) -> object:
    """Accept ``HH:MM`` (00:00..24:00); explain YAML's reading of unquoted ``16:00``."""
    if isinstance(value, int) and not isinstance(value, bool) and 60 <= value <= DAY_MINUTES:
        hh, mm = divmod(value, 60)
        raise ValueError(
            f'write times in quotes ("{hh:02d}:{mm:02d}"): YAML reads an unquoted '
            f"{hh}:{mm:02d} as the number {value}"
        )
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise ValueError(f"{value!r} is not a time of day (HH:MM, 00:00 to 24:00)")
    return value


ClockTime = Annotated[
    str,
    BeforeValidator(_clock_time),
    WithJsonSchema({"type": "string", "pattern": _CLOCK.pattern}),
]


def _known_mode(value: object) -> object:
    if isinstance(value, str) and value not in _MODE_VALUES:
        raise ValueError(f"{value!r} is not a mode; use one of {', '.join(CALENDAR_MODES)}")
    return value


def _calendar_mode(mode: Mode) -> Mode:
    if mode not in CALENDAR_MODES:
        raise ValueError(
            f"{mode} is set by events and people, not by the calendar; "
            f"use one of {', '.join(CALENDAR_MODES)}"
        )
    return mode


#: A mode the calendar may schedule, with a plain message for the others.
CalendarMode = Annotated[
    Mode,
    BeforeValidator(_known_mode),
    AfterValidator(_calendar_mode),
    WithJsonSchema({"type": "string", "enum": [m.value for m in CALENDAR_MODES]}),
]


@lru_cache(maxsize=2048)
def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(_Model):
    """``mode`` from ``start`` to ``end`` (local wall-clock times of one day, end exclusive)."""

    start: ClockTime
    end: ClockTime
    mode: CalendarMode

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if self.end_minute <= self.start_minute:
            raise ValueError(f"{self}: the end must come after the start")
        return self

    @property
    def start_minute(self) -> int:
        return _minutes(self.start)

    @property
    def end_minute(self) -> int:
        return _minutes(self.end)

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def _no_overlaps(intervals: list[Interval]) -> list[Interval]:
    """Reject overlaps: an item that overlaps an earlier item of the list is the error."""
    errors: list[InitErrorDetails] = []
    for j, later in enumerate(intervals):
        for earlier in intervals[:j]:
            if earlier.start_minute < later.end_minute and later.start_minute < earlier.end_minute:
                errors.append(_error((j,), later, f"{later} overlaps {earlier}"))
                break
    if errors:
        raise ValidationError.from_exception_data("Day", errors)
    return intervals


def _error(loc: tuple[str | int, ...], value: object, message: str) -> InitErrorDetails:
    """A located validation error (pydantic prefixes the location of the enclosing field)."""
    return {
        "type": PydanticCustomError("calendar", "{message}", {"message": message}),
        "loc": loc,
        "input": value,
    }


#: One day's intervals, in any order, not overlapping.
Day = Annotated[list[Interval], AfterValidator(_no_overlaps)]


def _day_rule_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "word"
    if isinstance(value, list | tuple):
        return "intervals"
    return None


#: What a holiday does to the day: ``closed``, ``normal`` (the weekly pattern) or intervals.
DayRule = Annotated[
    Annotated[Literal["closed", "normal"], Tag("word")] | Annotated[Day, Tag("intervals")],
    Discriminator(
        _day_rule_kind,
        custom_error_type="day_rule",
        custom_error_message="use closed, normal or a list of intervals",
    ),
]


class Weekly(_Model):
    """The usual week: a list of intervals per weekday; a day without intervals is closed."""

    mon: Day = Field(default_factory=list)
    tue: Day = Field(default_factory=list)
    wed: Day = Field(default_factory=list)
    thu: Day = Field(default_factory=list)
    fri: Day = Field(default_factory=list)
    sat: Day = Field(default_factory=list)
    sun: Day = Field(default_factory=list)

    def day(self, weekday: int) -> list[Interval]:
        """The intervals of ``weekday`` (0 = Monday, as ``date.weekday()``)."""
        intervals: list[Interval] = getattr(self, WEEKDAYS[weekday])
        return intervals


class HolidayPolicy(_Model):
    """What Danish public holidays, and each optional day, do to the weekly pattern."""

    public: DayRule = "closed"
    may_1: DayRule = "normal"
    june_5: DayRule = "normal"
    dec_24: DayRule = "closed"
    dec_31: DayRule = "closed"


class DatedException(_Model):
    """One local day with its own hours (``intervals``) or ``closed: true``; replaces the day."""

    date: date
    intervals: Day | None = None
    closed: bool = False
    reason: str = ""

    @model_validator(mode="after")
    def _one_of(self) -> DatedException:
        if self.closed == bool(self.intervals):
            raise ValueError(f"{self.date}: give either intervals or closed: true")
        return self


class Closure(_Model):
    """A municipality-wide closing day: closed, unless the branch has its own exception."""

    date: date
    reason: str = ""


def _unique_dates(items: Sequence[DatedException | Closure], field: str) -> None:
    first: dict[date, int] = {}
    errors: list[InitErrorDetails] = []
    for i, item in enumerate(items):
        if item.date in first:
            message = f"{item.date} is already in {field}[{first[item.date]}]"
            errors.append(_error((field, i, "date"), item.date, message))
        first.setdefault(item.date, i)
    if errors:
        raise ValidationError.from_exception_data("OpeningHours", errors)


class OpeningHours(_Model):
    """A branch's opening hours: weekly pattern, holiday policy, exceptions, closures."""

    weekly: Weekly = Field(default_factory=Weekly)
    holidays: HolidayPolicy = Field(default_factory=HolidayPolicy)
    exceptions: list[DatedException] = Field(default_factory=list)
    municipality_closures: list[Closure] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_entry_per_date(self) -> OpeningHours:
        _unique_dates(self.exceptions, "exceptions")
        _unique_dates(self.municipality_closures, "municipality_closures")
        return self


class ClosingPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    announce_before: list[int] = Field(
        default_factory=lambda: [15, 10, 5], description="minutes before closing"
    )
    pcs_off_before: int = Field(default=15, ge=0, le=120, description="minutes before closing")
    lights_off_after_empty: int = Field(default=5, ge=0, le=120, description="minutes")
    grace: int = Field(
        default=15, ge=0, le=240, description="minutes after closing before a straggler alert"
    )
    clear_out_gap: int = Field(
        default=0, ge=0, le=120, description="minutes closed between staffed and self-service"
    )
    occupancy_cap: int | None = Field(default=None, ge=1, description="from fire documentation")


ActuatorClass = Literal["door", "lights", "hvac", "pcs", "alarm"]


class Actuator(BaseModel):
    """``device.point`` follows the desired state of ``class``, through ``values``.

    ``values`` maps the desired state's value (``free``, ``armed``, ``on`` ...) to the value
    to write. For lights without ``values`` the desired light level (%) is written.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: ActuatorClass = Field(alias="class")
    device: str
    point: str
    values: dict[str, bool | int | float | str] | None = None
