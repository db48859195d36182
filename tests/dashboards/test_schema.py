"""Generated dashboard JSON and alert rules validate against the JSON Schemas of the subset
of Grafana's models that we emit (dashboards/*.schema.json), and hang together: unique ids,
panels inside the 24-column grid without overlaps, every variable a query uses is defined.
Grafana itself cannot run here; these schemas stand in for its loader."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from openbranch.dashboards import ALERT_RULES_FILE, BranchInfo, Fleet, build

SCHEMAS = Path(__file__).resolve().parents[2] / "dashboards"
BUILTINS = {"timeFilter", "__interval", "interval", "__interval_ms"}
FLEETS = {
    "with-areas": Fleet(
        id="aarhus",
        name="Aarhus Kommune",
        price_area="DK1",
        branches=(
            BranchInfo(id="hasle", name="Hasle", floor_area_m2=600),
            BranchInfo(id="viby", name="Viby", floor_area_m2=1100),
        ),
    ),
    "bare": Fleet(id="all", name="All branches"),
    "long-id": Fleet(id="frederiksberg-og-omegns-biblioteker", name="Frederiksberg"),
}


def schema(name: str) -> Any:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def dashboards_of(fleet: Fleet) -> dict[str, Any]:
    return {n: json.loads(t) for n, t in build(fleet).items() if n.endswith(".json")}


@pytest.mark.parametrize("fleet", FLEETS.values(), ids=FLEETS.keys())
def test_every_dashboard_validates_and_hangs_together(fleet: Fleet) -> None:
    validator = jsonschema.Draft202012Validator(schema("dashboard.schema.json"))
    boards = dashboards_of(fleet)
    assert sorted(boards) == ["branch.json", "energy.json", "extended-hours.json", "fleet.json"]
    assert len({b["uid"] for b in boards.values()}) == 4
    for name, board in boards.items():
        errors = [e.message for e in validator.iter_errors(board)]
        assert not errors, (name, errors)
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24, (name, panel["title"])
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & mine, (name, panel["title"], "overlaps")
            cells |= mine
            refs = [t["refId"] for t in panel["targets"]]
            assert len(set(refs)) == len(refs), (name, panel["title"])
        defined = {v["name"] for v in board["templating"]["list"]} | BUILTINS
        used = {
            m
            for p in board["panels"]
            for t in p["targets"]
            for m in re.findall(r"\$(\w+)", t["query"])
        } | {m for v in board["templating"]["list"] for m in re.findall(r"\$(\w+)", v["query"])}
        assert used <= defined, (name, used - defined)
        repeats = {p["repeat"] for p in board["panels"] if "repeat" in p}
        assert repeats <= defined, name


def test_the_schema_refuses_what_grafana_would_not_load() -> None:
    validator = jsonschema.Draft202012Validator(schema("dashboard.schema.json"))
    board = dashboards_of(FLEETS["bare"])["fleet.json"]
    broken: list[tuple[str, Any]] = []
    no_time_filter = json.loads(json.dumps(board))
    no_time_filter["panels"][0]["targets"][0]["query"] = 'SELECT last("mode") FROM "branch_mode"'
    broken.append(("query without $timeFilter", no_time_filter))
    off_grid = json.loads(json.dumps(board))
    off_grid["panels"][0]["gridPos"]["w"] = 30
    broken.append(("wider than the grid", off_grid))
    flux = json.loads(json.dumps(board))
    flux["panels"][0]["targets"][0]["rawQuery"] = False
    broken.append(("not a raw InfluxQL query", flux))
    for what, doc in broken:
        assert not validator.is_valid(doc), what


@pytest.mark.parametrize("fleet", FLEETS.values(), ids=FLEETS.keys())
def test_alert_rules_validate_and_chain_query_reduce_threshold(fleet: Fleet) -> None:
    document = yaml.safe_load(build(fleet)[ALERT_RULES_FILE])
    jsonschema.validate(document, schema("alert-rules.schema.json"))
    (group,) = document["groups"]
    assert group["folder"] == fleet.name
    titles = [r["title"] for r in group["rules"]]
    assert titles == [
        "Branch stopped reporting",
        "Outbox growing",
        "Branch still occupied after closing",
    ]
    for rule in group["rules"]:
        data = {d["refId"]: d for d in rule["data"]}
        condition = data[rule["condition"]]["model"]
        assert condition["type"] == "threshold"
        reduce = data[condition["expression"]]["model"]
        assert reduce["type"] == "reduce"
        query = data[reduce["expression"]]
        assert query["datasourceUid"] == "openbranch-influxdb"
        assert "$branch" not in query["model"]["query"]  # alert rules have no dashboard variables
        assert f"/^({fleet.branch_regex})$/" in query["model"]["query"]
