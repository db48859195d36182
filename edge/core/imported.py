"""Opening hours kept on the library's website, as the gateway sees them: the config section
that says where (``website_hours:``), the website's answer in the calendar's words
(``WebsiteAnswer``), and the file the imported hours are written to (``ImportedHours``).

The flow (``openbranch hours``; DECISIONS 73-77)::

    website --import--> <config dir>/hours_website.yaml   (the answer; changes nothing)
            --diff----> what would change, day by day, with the limits' verdicts
            --apply---> <config dir>/hours_imported.yaml  (dated exceptions + change log)

The hand-written config is never rewritten. The gateway's hours are the config's ``hours:``
with the imported exceptions laid in (``effective_hours``): an imported exception is used only
on a day the config has no exception and no municipality closure of its own, so a day the
config closes stays closed whatever the file says.

Which website answers is a plug-in: an integration registers a fetcher in the entry point
group ``openbranch.hours_sources`` (``HoursFetcher``); edge never imports it by name.

Exceptions:
    HoursSourceError     the website could not be read, or its answer is not what its API
                         documents (the message names the address and the item at fault)
    ConfigError          (edge.core.yamlsource) a file of this module that does not validate
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from datetime import date, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from openbranch.edge.core.schedule import (
    CalendarMode,
    ClockTime,
    DatedException,
    Day,
    OpeningHours,
)
from openbranch.edge.core.yamlsource import load_yaml, validate

__all__ = [
    "HOURS_SOURCES",
    "IMPORTED_FILE",
    "WEBSITE_FILE",
    "HoursChange",
    "HoursFetcher",
    "HoursSourceError",
    "ImportedHours",
    "WebsiteAnswer",
    "WebsiteHours",
    "effective_hours",
    "fetcher",
    "read_imported",
    "read_website",
    "write_yaml",
]

HOURS_SOURCES = "openbranch.hours_sources"  # entry points: name -> HoursFetcher
IMPORTED_FILE = "hours_imported.yaml"  # beside the gateway config, written by `hours apply`
WEBSITE_FILE = "hours_website.yaml"  # beside the gateway config, written by `hours import`
MAX_CHANGES = 1000  # the change log a file keeps (the audit keeps every one for ever)


class HoursSourceError(Exception):
    """The website could not be read or answered something its API does not document."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Category = Annotated[str, Field(min_length=1, max_length=200)]


class WebsiteHours(_Model):
    """Where the branch's hours are published and how they become modes (the fleet inventory's
    per-branch table, rendered into the gateway config as ``website_hours:``)."""

    source: Literal["dplcms"] = Field(
        default="dplcms", description="the website's API (an openbranch.hours_sources plug-in)"
    )
    url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", description="the site's root")
    branch_id: int = Field(ge=1, description="the branch's id on the website")
    categories: dict[Category, CalendarMode | Literal["ignore"]] = Field(
        min_length=1,
        description="each category title the website uses -> a mode, or ignore (telephone "
        "hours); a title not in this table stops the import",
    )
    weeks: int = Field(default=8, ge=1, le=52, description="how far ahead to import")
    timeout: float = Field(default=10.0, gt=0, le=120, description="seconds per request")
    stale_after_hours: int = Field(
        default=72,
        ge=1,
        le=24 * 365,
        description="hours_stale is raised when the applied hours were fetched longer ago",
    )
    latest_self_service: ClockTime | None = Field(
        default=None, description="self-service never extends past this time of day"
    )
    auto_apply: Literal["nothing", "reductions"] = Field(
        default="reductions",
        description="what `hours apply --auto` may apply: closures and shortening, or nothing",
    )
    folder: str | None = Field(
        default=None,
        description=f"where {IMPORTED_FILE} and {WEBSITE_FILE} are (default: the config's folder)",
    )

    @property
    def imported_file(self) -> Path:
        return Path(self.folder or ".") / IMPORTED_FILE

    @property
    def website_file(self) -> Path:
        return Path(self.folder or ".") / WEBSITE_FILE

    @model_validator(mode="after")
    def _some_mode(self) -> WebsiteHours:
        if all(mode == "ignore" for mode in self.categories.values()):
            raise ValueError("categories: every category is ignored, nothing would be imported")
        return self


class WebsiteAnswer(_Model):
    """The website's hours for ``start``..``end`` (local days, both included) in the calendar's
    words: every day of the range is in ``days``; a day with no interval is closed."""

    source: str  # the address the answer came from
    branch_id: int
    fetched_at: datetime
    start: date
    end: date
    days: dict[date, Day]

    @model_validator(mode="after")
    def _whole_range(self) -> WebsiteAnswer:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if len(self.days) != (self.end - self.start).days + 1 or any(
            not self.start <= d <= self.end for d in self.days
        ):
            raise ValueError(f"days must be exactly {self.start}..{self.end}")
        return self


class HoursChange(_Model):
    """One day's hours changed by an import: the audit entry's content."""

    seq: int = Field(ge=1)
    date: date
    before: str
    after: str
    source: str
    fetched_at: datetime
    applied_at: datetime
    by: str  # "hours apply" or "hours apply --auto"

    def message(self) -> str:
        return (
            f"{self.date}: {self.before} -> {self.after} (from {self.source}, fetched "
            f"{self.fetched_at.isoformat()}, applied {self.applied_at.isoformat()} by {self.by})"
        )


class ImportedHours(_Model):
    """``hours_imported.yaml``: the dated exceptions the website's hours gave, the answer they
    came from, and the log of the changes applied (newest last)."""

    source: str
    branch_id: int
    fetched_at: datetime
    start: date
    end: date
    exceptions: list[DatedException] = Field(default_factory=list)
    changes: list[HoursChange] = Field(default_factory=list, max_length=MAX_CHANGES)

    @property
    def last_seq(self) -> int:
        return self.changes[-1].seq if self.changes else 0


#: An hours source: (the config section, first day, last day) -> the website's answer.
HoursFetcher = Callable[[WebsiteHours, date, date], WebsiteAnswer]


def fetcher(name: str) -> HoursFetcher:
    """The fetcher registered as ``name`` in ``openbranch.hours_sources``."""
    for ep in entry_points(group=HOURS_SOURCES):
        if ep.name == name:
            found: HoursFetcher = ep.load()
            return found
    raise HoursSourceError(f"no hours source {name!r} is installed ({HOURS_SOURCES})")


def read_imported(path: Path) -> ImportedHours | None:
    """The imported hours at ``path``, None if there is no such file; a file that does not
    validate is a ``ConfigError`` naming its line."""
    return validate(ImportedHours, load_yaml(path)) if path.exists() else None


def read_website(path: Path) -> WebsiteAnswer | None:
    """The website's answer saved by `hours import`, None if there is none."""
    return validate(WebsiteAnswer, load_yaml(path)) if path.exists() else None


def write_yaml(path: Path, model: BaseModel, header: str) -> None:
    """``model`` as YAML at ``path``, atomically: a reader sees the old file or the new one."""
    text = header + yaml.safe_dump(
        model.model_dump(mode="json"), sort_keys=False, allow_unicode=True
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def effective_hours(hours: OpeningHours | None, imported: ImportedHours | None) -> OpeningHours:
    """The config's hours with the imported exceptions laid in, on days the config leaves to
    its weekly pattern and holiday rules (its own exceptions and closures win)."""
    base = hours or OpeningHours()
    if imported is None:
        return base
    own: Mapping[date, object] = {
        **{e.date: e for e in base.exceptions},
        **{c.date: c for c in base.municipality_closures},
    }
    added = [e for e in imported.exceptions if e.date not in own]
    return base.model_copy(update={"exceptions": [*base.exceptions, *added]})
