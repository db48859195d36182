"""DPL CMS instances -> the calendar's days (pure; tables), and the sample config."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from openbranch.edge.core.config import load_gateway_config
from openbranch.edge.core.imported import HoursSourceError, WebsiteHours
from openbranch.edge.hours.importing import day_text
from openbranch.integrations.dplcms.mapping import days_of
from openbranch.integrations.dplcms.models import instances
from tests.integrations.dplcms.server import fixture

ROOT = Path(__file__).resolve().parents[3]
DAY = "2027-10-25"
WEBSITE = WebsiteHours(
    url="https://bibliotek.example.dk",
    branch_id=12,
    categories={
        "Med betjening": "staffed",
        "Selvbetjening": "self_service",
        "Åbent": "self_service",
        "Lukket": "closed",
        "Telefontid": "ignore",
    },
)


def item(title: str, start: str, end: str, **more: Any) -> dict[str, Any]:
    return {
        "id": 1,
        "category": {"title": title, "color": "#000000"},
        "date": DAY,
        "start_time": start,
        "end_time": end,
        "branch_id": 12,
        "repetition": {"id": 1, "type": "none"},
        **more,
    }


def one_day(*items: dict[str, Any]) -> str:
    found = instances.validate_python(list(items))
    days = days_of(found, WEBSITE, date(2027, 10, 25), date(2027, 10, 25), "site")
    return day_text(days[date(2027, 10, 25)])


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ((), "closed"),
        ((item("Telefontid", "09:00", "12:00"),), "closed"),
        ((item("Med betjening", "10:00", "16:00"),), "10:00-16:00 staffed"),
        (
            (item("Åbent", "08:00", "20:00"), item("Med betjening", "10:00", "16:00")),
            "08:00-10:00 self_service, 10:00-16:00 staffed, 16:00-20:00 self_service",
        ),
        (  # adjacent instances of one mode are one interval
            (item("Selvbetjening", "08:00", "10:00"), item("Åbent", "10:00", "12:00")),
            "08:00-12:00 self_service",
        ),
        ((item("Selvbetjening", "18:00", "00:00"),), "18:00-24:00 self_service"),
        ((item("Lukket", "00:00", "23:59"),), "closed"),
    ],
    ids=["none", "ignored", "staffed", "overlap", "adjacent", "to-midnight", "closed"],
)
def test_a_days_instances_become_its_intervals(items: tuple[Any, ...], expected: str) -> None:
    assert one_day(*items) == expected


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (
            (item("Med betjening", "10:00", "16:00", branch_id=13),),
            "site: [0] (2027-10-25 10:00-16:00, 'Med betjening'): branch_id 13, not 12",
        ),
        (
            (item("Selvbetjening", "16:00", "10:00"),),
            "site: [0] (2027-10-25 16:00-10:00, 'Selvbetjening'): the end is not after the start",
        ),
        (
            (item("Med betjening", "10:00", "16:00"), item("Arrangement", "17:00", "19:00")),
            "site: [1] (2027-10-25 17:00-19:00, 'Arrangement'): category 'Arrangement' is not "
            "in website_hours.categories ('Med betjening', 'Selvbetjening', 'Åbent', 'Lukket', "
            "'Telefontid'); map it to a mode or to ignore: nothing imported",
        ),
    ],
    ids=["other-branch", "reversed", "unmapped"],
)
def test_what_cannot_be_mapped_is_refused_naming_the_instance(
    items: tuple[Any, ...], expected: str
) -> None:
    with pytest.raises(HoursSourceError) as caught:
        one_day(*items)
    assert str(caught.value) == expected


def test_a_weekly_repetition_without_its_end_is_not_the_documented_shape() -> None:
    with pytest.raises(ValueError, match=r"a weekly repetition has weekly_data\.end_date"):
        instances.validate_python(
            [item("Åbent", "08:00", "20:00", repetition={"id": 4, "type": "weekly"})]
        )


def test_the_sample_config_validates_and_maps_the_stand_in_sites_week() -> None:
    config = load_gateway_config(ROOT / "integrations" / "dplcms" / "sample.yaml")
    website = config.website_hours
    assert website is not None
    assert website.folder == str(ROOT / "integrations" / "dplcms")
    week = [i for i in fixture("changed_week.json") if i["branch_id"] == website.branch_id]
    days = days_of(
        instances.validate_python(week), website, date(2027, 10, 25), date(2027, 10, 31), "site"
    )
    assert [day_text(days[d]) for d in sorted(days)][2:] == [
        "closed",
        "08:00-10:00 self_service, 10:00-16:00 staffed, 16:00-18:00 self_service",
        "08:00-10:00 self_service, 10:00-16:00 staffed, 16:00-20:00 self_service",
        "10:00-14:00 staffed, 14:00-22:00 self_service",
        "12:00-16:00 self_service",
    ]
