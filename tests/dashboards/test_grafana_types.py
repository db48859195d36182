"""Every dashboard we emit, read and written again by Grafana's own types.

``grafana-foundation-sdk`` (pinned in the dev extra to its Grafana 11.6 line) carries the
dashboard and panel models generated from Grafana's own schema. A dashboard, and each of its
panels by type, goes through ``from_json`` and back through the sdk's ``JSONEncoder``; every
field we wrote must come back unchanged (Grafana may add its defaults, never drop or rename
ours). The sdk has no InfluxDB query model, so a panel's targets come back as the sdk's
``UnknownDataquery`` bag, which keeps them whole: their fields are checked like the rest.
Grafana itself cannot run here (see tests/dashboards/grafana_standin.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as grafana

from openbranch.dashboards.build import all_dashboards
from openbranch.dashboards.model import BranchInfo, Dashboard, Fleet, Panel, PanelKind
from openbranch.edge.core.registry import default_registry
from openbranch.provisioning.inventory import load_inventory
from openbranch.provisioning.render import render
from openbranch.provisioning.secrets import Secrets

register_default_plugins()  # the sdk's panel and query types, by plugin id

GRAFANA_VERSION = "11.6"  # the sdk line pinned in pyproject.toml; README names it
ROOT = Path(__file__).resolve().parents[2]
FLEET = Fleet(
    id="aarhus",
    name="Aarhus",
    price_area="DK1",
    branches=(
        BranchInfo(id="dokk1", name="Dokk1", floor_area_m2=3500.0),
        BranchInfo(id="viby", name="Viby"),  # no floor area: the per-m² panels' other path
    ),
)
BOARDS = all_dashboards(FLEET)


def through_grafana(board: dict[str, Any]) -> dict[str, Any]:
    """A dashboard's JSON read by the sdk's Dashboard model and written again."""
    out: dict[str, Any] = json.loads(
        json.dumps(grafana.Dashboard.from_json(board), cls=JSONEncoder)
    )
    return out


def lost(ours: object, theirs: object, at: str = "") -> list[str]:
    """Where ``theirs`` lacks or changed something of ``ours`` (added keys are fine)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        problems = [f"{at}.{k}: dropped" for k in ours if k not in theirs]
        for key in ours.keys() & theirs.keys():
            problems += lost(ours[key], theirs[key], f"{at}.{key}")
        return problems
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return [f"{at}: {len(ours)} items became {len(theirs)}"]
        return [
            p
            for i, pair in enumerate(zip(ours, theirs, strict=True))
            for p in lost(*pair, f"{at}[{i}]")
        ]
    if ours != theirs or type(ours) is not type(theirs):
        return [f"{at}: {ours!r} became {theirs!r}"]
    return []


def test_the_check_sees_a_field_grafana_does_not_know() -> None:
    """The property the other tests rely on: a field outside Grafana's schema is reported."""
    board = BOARDS["fleet"].to_json()
    board["templating"]["list"][0]["definition"] = "SHOW TAG VALUES ..."  # the UI's, not schema
    board["panels"][0]["fieldConfig"]["defaults"]["unitt"] = "kwh"
    assert sorted(lost(board, through_grafana(board))) == [
        ".panels[0].fieldConfig.defaults.unitt: dropped",
        ".templating.list[0].definition: dropped",
    ]


@pytest.mark.parametrize("stem", sorted(BOARDS))
def test_dashboard_round_trips_through_grafanas_model(stem: str) -> None:
    board = BOARDS[stem].to_json()
    once = through_grafana(board)
    assert lost(board, once) == []
    assert through_grafana(once) == once  # Grafana's defaults are added once, then stable
    assert once["schemaVersion"] == board["schemaVersion"]


def _panels_of(kind: str) -> list[tuple[Dashboard, Panel]]:
    found = [(b, p) for b in BOARDS.values() for p in b.panels if p.kind == kind]
    if found:
        return found
    return [(BOARDS["fleet"], Panel(title=f"a {kind}", kind=kind, targets=()))]  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", get_args(PanelKind))
def test_panel_type_is_grafanas_and_round_trips_typed(kind: str) -> None:
    """Each panel type we use is one Grafana's schema has, its options and field config are
    decoded into that type's models (not kept as an untyped dict), and nothing is lost."""
    config = cogruntime.panelcfg_config(kind)
    assert config is not None, f"Grafana {GRAFANA_VERSION} has no panel type {kind!r}"
    for board, panel in _panels_of(kind):
        ours = panel.to_json(1, 0, 0)
        typed = grafana.Panel.from_json(ours)
        assert typed.type_val == kind
        assert not isinstance(typed.options, dict), f"{kind} options were not typed"
        assert typed.field_config is not None
        assert typed.field_config.defaults is not None
        assert all(type(t).__name__ == "UnknownDataquery" for t in typed.targets or [])
        theirs = json.loads(json.dumps(typed, cls=JSONEncoder))
        assert lost(ours, theirs) == [], f"{board.uid}: {panel.title}"


def test_provisioned_dashboards_round_trip(tmp_path: Path) -> None:
    """What `openbranch provision render` installs for an inventory, file by file."""
    inventory = load_inventory(
        ROOT / "examples" / "inventories" / "aarhus.yaml",
        check_device=default_registry().check_device,
    )
    files = render(inventory, Secrets(tmp_path / "secrets"))
    boards = {n: t for n, t in files.items() if n.startswith("grafana/dashboards/")}
    assert len(boards) == len(BOARDS)
    for name, text in boards.items():
        board = json.loads(text)
        assert lost(board, through_grafana(board)) == [], name
