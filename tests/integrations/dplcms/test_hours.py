"""`openbranch hours import|diff|apply` against a stand-in DPL CMS site (``server.py``: the
documented JSON on a loopback port), and `schedule plan` before and after, figures by hand.

The branch (``gateway.yaml`` below, Europe/Copenhagen): Mon-Fri self-service 08-10, staffed
10-16, self-service 16-20; Sat staffed 10-14; Sun self-service 10-16; Fri 29 October 2027
closed by its own config (fire door repair). The week of 25 October 2027 holds the fall-back
day (Sun 31, 03:00 -> 02:00): until then 10:00 local is 08:00 UTC, from then 09:00 UTC. (The
last week of March 2027 is Easter, closed by the holiday rules: October shows the clock change
without them.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from openbranch.edge.cli import main
from openbranch.edge.core.imported import read_imported
from openbranch.integrations.dplcms.models import instances
from tests.integrations.dplcms.server import DplStandIn, fixture
from tests.services import free_port

WEEK = ("--from", "2027-10-25")
WEEKDAY = [
    {"start": "08:00", "end": "10:00", "mode": "self_service"},
    {"start": "10:00", "end": "16:00", "mode": "staffed"},
    {"start": "16:00", "end": "20:00", "mode": "self_service"},
]


def gateway_yaml(where: Path, url: str, **website: object) -> Path:
    config = {
        "branch": {"id": "vanloese", "name": "Vanløse", "timezone": "Europe/Copenhagen"},
        "store": {"path": str(where / "outbox.db")},
        "hours": {
            "weekly": {
                **dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), WEEKDAY),
                "sat": [{"start": "10:00", "end": "14:00", "mode": "staffed"}],
                "sun": [{"start": "10:00", "end": "16:00", "mode": "self_service"}],
            },
            "exceptions": [{"date": "2027-10-29", "closed": True, "reason": "fire door repair"}],
        },
        "website_hours": {
            "url": url,
            "branch_id": 12,
            "categories": {
                "Med betjening": "staffed",
                "Selvbetjening": "self_service",
                "Telefontid": "ignore",
            },
            "weeks": 1,
            "latest_self_service": "21:00",
            **website,
        },
    }
    path = where / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def plan(capsys: pytest.CaptureFixture[str], config: Path) -> list[tuple[str, str, str]]:
    code, out, _ = run(capsys, "schedule", "plan", str(config), *WEEK, "--json")
    assert code == 0
    return [(t["at"][:16], t["from"], t["to"]) for t in json.loads(out)["transitions"]]


def weekday(day: int, close: str = "18:00") -> list[tuple[str, str, str]]:
    """Mon-Fri before the clock change (CEST, UTC+2): 06, 08, 14 and ``close`` UTC."""
    d = f"2027-10-{day}T"
    return [
        (d + "06:00", "closed", "self_service"),
        (d + "08:00", "self_service", "staffed"),
        (d + "14:00", "staffed", "self_service"),
        (d + close, "self_service", "closed"),
    ]


_close = ("self_service", "closed")
SAT = [("2027-10-30T08:00", "closed", "staffed"), ("2027-10-30T12:00", "staffed", "closed")]


@pytest.fixture
def site() -> Any:
    with DplStandIn(fixture("changed_week.json")) as stand_in:
        yield stand_in


def test_a_changed_week_imported_diffed_and_applied_within_the_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], site: DplStandIn
) -> None:
    config = gateway_yaml(tmp_path, site.url)
    sun_before = [("2027-10-31T09:00", "closed", "self_service"), ("2027-10-31T15:00", *_close)]
    before = plan(capsys, config)
    assert before == [*weekday(25), *weekday(26), *weekday(27), *weekday(28), *SAT, *sun_before]

    code, out, _ = run(capsys, "hours", "import", str(config), *WEEK)
    assert code == 0
    assert site.requests == [
        "/api/v1/opening_hours?_format=json&branch_id=12&from_date=2027-10-25&to_date=2027-10-31"
    ]
    assert "6 days differ" in out
    usual = "08:00-10:00 self_service, 10:00-16:00 staffed, 16:00-20:00 self_service"
    lines = [line.strip() for line in out.splitlines()]

    def day(head: str, now: str, website: str) -> str:
        return f"  {head}\n    now      {now}\n    website  {website}\n"

    tuesday = "08:00-10:00 self_service, 10:00-16:00 staffed, 16:00-21:00 self_service"
    assert day("Tue 2027-10-26  longer: apply", usual, tuesday) in out
    assert day("Wed 2027-10-27  closure: apply", usual, "closed") in out
    fire = "Fri 2027-10-29  longer: HELD, the config decides this day (exception: fire door repair)"
    assert day(fire, "closed", usual) in out
    late = (
        "Sat 2027-10-30  longer: HELD, self-service past 21:00 (website_hours.latest_self_service)"
    )
    saturday = "10:00-14:00 staffed, 14:00-22:00 self_service"
    assert day(late, "10:00-14:00 staffed", saturday) in out
    sunday = (
        "Sun 2027-10-31  shorter: apply",
        "10:00-16:00 self_service",
        "12:00-16:00 self_service",
    )
    assert day(*sunday) in out
    assert any(
        line.startswith("WARNING 2027-10-29: the website opens") and "fire door repair" in line
        for line in lines
    )
    assert not any(
        line.startswith("Mon 2027-10-25") for line in lines
    )  # Monday: telephone hours ignored
    assert plan(capsys, config) == before  # an import changes nothing

    code, out, _ = run(capsys, "hours", "apply", str(config), "--auto")
    assert code == 0
    assert "3 days applied, 3 held" in out
    assert "Tue 2027-10-26  longer: HELD, not a closure or shortening: apply by hand" in out
    sun_after = [("2027-10-31T11:00", "closed", "self_service"), ("2027-10-31T15:00", *_close)]
    assert plan(capsys, config) == [
        *weekday(25),
        *weekday(26),
        *weekday(28, close="16:00"),
        *SAT,
        *sun_after,
    ]
    imported = read_imported(tmp_path / "hours_imported.yaml")
    assert imported is not None
    assert [(c.seq, str(c.date), c.after, c.by) for c in imported.changes] == [
        (1, "2027-10-27", "closed", "hours apply --auto"),
        (
            2,
            "2027-10-28",
            "08:00-10:00 self_service, 10:00-16:00 staffed, 16:00-18:00 self_service",
            "hours apply --auto",
        ),
        (3, "2027-10-31", "12:00-16:00 self_service", "hours apply --auto"),
    ]
    assert all(c.source.startswith(site.url + "/api/v1/opening_hours?") for c in imported.changes)

    code, out, _ = run(capsys, "hours", "apply", str(config))  # by hand: Tuesday too
    assert "1 days applied, 2 held" in out
    assert plan(capsys, config)[4:8] == weekday(26, close="19:00")


def test_a_closure_deleted_on_the_website_opens_the_day_again_by_hand_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], site: DplStandIn
) -> None:
    config = gateway_yaml(tmp_path, site.url)
    assert run(capsys, "hours", "import", str(config), *WEEK)[0] == 0
    assert run(capsys, "hours", "apply", str(config), "--auto")[0] == 0
    assert plan(capsys, config)[8:12] == weekday(28, close="16:00")  # Wed closed: no changes
    wednesday = [
        dict(i, date="2027-10-27", id=i["id"] + 500)
        for i in fixture("changed_week.json")
        if i["date"] == "2027-10-25" and i["category"]["title"] != "Telefontid"
    ]
    site.instances = [*site.instances, *wednesday]  # the librarians deleted the closure

    assert run(capsys, "hours", "import", str(config), *WEEK)[0] == 0
    code, out, _ = run(capsys, "hours", "diff", str(config), "--auto")
    assert "Wed 2027-10-27  longer: HELD, not a closure or shortening" in out
    assert "    now      closed\n    website  08:00-10:00 self_service, 10:00-16:00 staffed" in out
    run(capsys, "hours", "apply", str(config), "--auto")
    assert plan(capsys, config)[8:12] == weekday(28, close="16:00")  # still closed
    code, out, _ = run(capsys, "hours", "apply", str(config))
    assert code == 0
    assert plan(capsys, config)[8:12] == weekday(27)  # open again, the usual hours
    imported = read_imported(tmp_path / "hours_imported.yaml")
    assert imported is not None
    assert "2027-10-27" not in {str(e.date) for e in imported.exceptions}  # the weekly rule
    assert [str(c.date) for c in imported.changes][-1:] == ["2027-10-27"]
    assert imported.changes[-1].before == "closed"


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        pytest.param(
            lambda s: s.instances.append(
                dict(s.instances[3], category={"title": "Arrangement", "color": "#000"})
            ),
            "[16] (2027-10-25 16:00-20:00, 'Arrangement'): category 'Arrangement' is not in "
            "website_hours.categories",
            id="unmapped-category",
        ),
        pytest.param(
            lambda s: setattr(s, "raw", b'[{"id": 1, "category": {"title": "Med bet'),
            "the answer is not JSON: line 1 column 34: Unterminated string",
            id="malformed-json",
        ),
        pytest.param(
            lambda s: s.instances.__setitem__(2, dict(s.instances[2], start_time="10.00")),
            "not DPL CMS's documented opening hours: [2].start_time: Value error, '10.00' is "
            "not a time of day",
            id="off-schema",
        ),
        pytest.param(lambda s: setattr(s, "status", 500), "answered HTTP 500", id="server-error"),
    ],
)
def test_a_bad_answer_is_refused_where_it_is_wrong_and_changes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    site: DplStandIn,
    spoil: Any,
    expected: str,
) -> None:
    config = gateway_yaml(tmp_path, site.url)
    assert run(capsys, "hours", "import", str(config), *WEEK)[0] == 0
    assert run(capsys, "hours", "apply", str(config), "--auto")[0] == 0
    files = {p.name: p.read_bytes() for p in tmp_path.glob("hours_*.yaml")}
    assert set(files) == {"hours_website.yaml", "hours_imported.yaml"}
    spoil(site)
    code, _, err = run(capsys, "hours", "import", str(config), *WEEK)
    assert code == 1
    assert err.startswith(f"openbranch hours import: nothing imported: {site.url}/api/v1/")
    assert expected in err
    assert "the gateway keeps the hours fetched 0 min ago" in err
    assert {p.name: p.read_bytes() for p in tmp_path.glob("hours_*.yaml")} == files


def test_an_unreachable_site_leaves_the_hours_and_says_how_old_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = gateway_yaml(tmp_path, f"http://127.0.0.1:{free_port()}")
    before = plan(capsys, config)
    code, _, err = run(capsys, "hours", "import", str(config), *WEEK)
    assert code == 1
    assert "unreachable: [Errno 111] Connection refused" in err
    assert "the gateway keeps its config's hours (nothing imported yet)" in err
    assert not list(tmp_path.glob("hours_*.yaml"))
    assert plan(capsys, config) == before


def test_plan_as_dpl_json_is_the_api_shape_and_imports_back_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = gateway_yaml(tmp_path, "http://127.0.0.1:1")
    code, out, _ = run(capsys, "schedule", "plan", str(config), *WEEK, "--format", "dpl-json")
    assert code == 0
    published = json.loads(out)
    found = instances.validate_python(published)  # DPL CMS's documented shape
    assert [(i.date.isoformat(), i.start_time, i.end_time, i.category.title) for i in found][
        -3:
    ] == [
        ("2027-10-28", "16:00", "20:00", "Selvbetjening"),  # Fri 26: closed, no instance
        ("2027-10-30", "10:00", "14:00", "Med betjening"),
        ("2027-10-31", "10:00", "16:00", "Selvbetjening"),  # the fall-back day, local
    ]
    assert len(found) == 4 * 3 + 1 + 1
    assert {i.branch_id for i in found} == {12}
    with DplStandIn(published) as site:
        config = gateway_yaml(tmp_path, site.url)
        code, out, _ = run(capsys, "hours", "import", str(config), *WEEK)
    assert code == 0
    assert "0 days differ" in out


def test_a_folder_that_cannot_be_written_is_said_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], site: DplStandIn
) -> None:
    missing = tmp_path / "gone"
    config = gateway_yaml(tmp_path, site.url, folder=str(missing))
    code, _, err = run(capsys, "hours", "import", str(config), *WEEK)
    assert code == 1
    assert err == (
        f"{missing / 'hours_website.yaml'}: not written: No such file or directory "
        "(nothing changed)\n"
    )
    assert not list(tmp_path.rglob("hours_*.yaml"))
