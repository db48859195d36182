"""`openbranch dashboards build` writes every dashboard and the alert rules; `push` sends the
dashboards to Grafana's HTTP API (a stand-in server: Grafana cannot run here) idempotently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edge.cli import main
from tests.provisioning.test_grafana import grafana  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]
AARHUS = ROOT / "examples" / "inventories" / "aarhus.yaml"


def test_build_writes_json_per_dashboard_and_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboards", "build", "--out", str(tmp_path), "--inventory", str(AARHUS)]) == 0
    assert "Aarhus Kommune: 4 dashboards and alert-rules.yaml" in capsys.readouterr().out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "alert-rules.yaml",
        "branch.json",
        "energy.json",
        "extended-hours.json",
        "fleet.json",
    ]
    energy = json.loads((tmp_path / "energy.json").read_text(encoding="utf-8"))
    assert energy["uid"] == "openbranch-energy-aarhus"
    rules = yaml.safe_load((tmp_path / "alert-rules.yaml").read_text(encoding="utf-8"))
    assert len(rules["groups"][0]["rules"]) == 3
    bare = tmp_path / "bare"
    assert main(["dashboards", "build", "--out", str(bare)]) == 0
    variables = json.loads((bare / "energy.json").read_text(encoding="utf-8"))["templating"]
    assert "floor_area_m2" in [v["name"] for v in variables["list"]]


def test_push_creates_then_changes_nothing(
    grafana: str,  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["dashboards", "push", "--url", grafana, "--token", "t0ken", "--inventory", str(AARHUS)]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0] == "created folder Aarhus Kommune"
    assert len(first) == 5  # the folder and four dashboards
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == "Grafana: no changes"
