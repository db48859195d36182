"""DPL CMS's opening hours, as its REST API documents them (``GET /api/v1/opening_hours``).

Written from DPL CMS's source (github.com/danskernesdigitalebibliotek/dpl-cms, module
``web/modules/custom/dpl_opening_hours``: ``OpeningHoursResourceBase::
openingHoursInstanceSchema``, ``RepetitionMapper``, ``OpeningHoursRepetitionType``, and the
generated ``openapi.json``). One answer is a JSON array of instances::

    {"id": 17, "category": {"title": "Med betjening", "color": "#2e7d32"},
     "date": "2027-03-29", "start_time": "10:00", "end_time": "16:00",
     "branch_id": 12, "branch_isil_id": "DK-710100",
     "repetition": {"id": 4, "type": "weekly", "weekly_data": {"end_date": "2027-06-30"}}}

The list is already expanded: each weekly occurrence is an instance of its own, with its date,
sharing its repetition's id. ``type`` is ``none`` or ``weekly`` (the description's "single" is
the enum's ``none``); ``weekly`` carries ``weekly_data.end_date``. Fields the API may add later
are ignored; the documented ones are required as documented.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

__all__ = ["Category", "Instance", "Repetition", "WeeklyData", "instances"]

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _hhmm(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError(f"{value!r} is not a time of day in the API's format HH:MM")
    return value


HHMM = Annotated[str, AfterValidator(_hhmm)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Category(_Model):
    title: str = Field(min_length=1)
    color: str


class WeeklyData(_Model):
    end_date: date


class Repetition(_Model):
    id: int
    type: Literal["none", "weekly"] = "none"
    weekly_data: WeeklyData | None = None

    @model_validator(mode="after")
    def _weekly_has_end(self) -> Repetition:
        if self.type == "weekly" and self.weekly_data is None:
            raise ValueError("a weekly repetition has weekly_data.end_date")
        return self


class Instance(_Model):
    id: int
    category: Category
    date: date
    start_time: HHMM
    end_time: HHMM
    branch_id: int
    branch_isil_id: str | None = None
    repetition: Repetition


instances: TypeAdapter[list[Instance]] = TypeAdapter(list[Instance])
