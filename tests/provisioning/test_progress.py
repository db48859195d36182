"""provision's progress bar counts the branches as the render renders them (issue 13: it
iterated an empty loop, then rendered without progress)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from openbranch.edge.cli import main
from openbranch.provisioning.cli import progress_bar
from openbranch.provisioning.inventory import Branch, load_inventory
from openbranch.provisioning.render import render
from openbranch.provisioning.secrets import Secrets

ROOT = Path(__file__).resolve().parents[2]
AARHUS = ROOT / "examples" / "inventories" / "aarhus.yaml"


def fleet(tmp_path: Path, n: int) -> Path:
    """Aarhus with ``n`` copies of hasle (own ids and device addresses)."""
    data = yaml.safe_load(AARHUS.read_text(encoding="utf-8"))
    template = data["branches"][1]
    branches = []
    for i in range(n):
        branch = yaml.safe_load(yaml.safe_dump(template))
        branch["id"], branch["name"] = f"b{i:02d}", f"Branch {i:02d}"
        for device in branch["devices"]:
            if "host" in device["transport"]:
                device["transport"]["host"] = f"10.30.{i}.{device['transport']['host'][-2:]}"
            else:
                device["transport"]["topic"] = f"aarhus/b{i:02d}/{device['id']}"
        branches.append(branch)
    data["branches"] = branches
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_the_bar_advances_once_per_branch_as_it_is_rendered(tmp_path: Path) -> None:
    inventory = load_inventory(fleet(tmp_path, 25))
    steps: list[str] = []
    bars = []

    def progress(branches: list[Branch]) -> Iterator[Branch]:
        bar = progress_bar(branches)
        bars.append(bar)
        for branch in bar:
            yield branch  # render renders this branch before asking for the next
            steps.append(branch.id)

    files = render(inventory, Secrets(tmp_path / "secrets"), progress=progress)
    (bar,) = bars
    assert (bar.total, bar.n) == (25, 25)
    assert steps == [f"b{i:02d}" for i in range(25)]  # one step per branch, in order
    assert len([n for n in files if n.startswith("gateways/")]) == 25


def test_provision_render_shows_the_bar_for_a_fleet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = fleet(tmp_path, 25)
    out, secrets = str(tmp_path / "out"), str(tmp_path / "secrets")
    assert main(["provision", "render", str(path), "--out", out, "--secrets", secrets]) == 0
    err = capsys.readouterr().err
    assert "rendering: 100%" in err and "25/25" in err, err
    small = main(["provision", "render", str(AARHUS), "--out", out + "2", "--secrets", secrets])
    assert small == 0
    assert "rendering" not in capsys.readouterr().err  # three branches: no bar
