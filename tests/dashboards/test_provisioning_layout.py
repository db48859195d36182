"""The provisioning render, written to disk as an operator installs it: Grafana's dashboard
provider points at a folder that holds every generated dashboard, each parses and validates;
the alerting file holds the rules. Grafana cannot run here: this follows the provider file the
way Grafana's file provisioner would (options.path, *.json files in it)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from openbranch.dashboards import ALERT_RULES_FILE, build
from openbranch.edge.core.registry import default_registry
from openbranch.provisioning.inventory import load_inventory
from openbranch.provisioning.render import GRAFANA_DASHBOARDS, fleet_of, render
from openbranch.provisioning.secrets import Secrets

ROOT = Path(__file__).resolve().parents[2]


def test_provider_folder_holds_every_dashboard(tmp_path: Path) -> None:
    for example in ("aarhus", "copenhagen"):
        inventory = load_inventory(
            ROOT / "examples" / "inventories" / f"{example}.yaml",
            check_device=default_registry().check_device,
        )
        out = tmp_path / example
        for name, text in render(inventory, Secrets(tmp_path / f"{example}-secrets")).items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(text, encoding="utf-8")
        provisioning = out / "grafana" / "provisioning"
        (provider,) = yaml.safe_load((provisioning / "dashboards" / "openbranch.yaml").read_text())[
            "providers"
        ]
        installed = Path(provider["options"]["path"])
        folder = out / "grafana" / "dashboards" / installed.relative_to(GRAFANA_DASHBOARDS)
        expected = {n for n in build(fleet_of(inventory)) if n.endswith(".json")}
        assert {p.name for p in folder.glob("*.json")} == expected
        schema = json.loads((ROOT / "dashboards" / "dashboard.schema.json").read_text())
        uids = set()
        for path in folder.glob("*.json"):
            board = json.loads(path.read_text(encoding="utf-8"))
            jsonschema.validate(board, schema)
            uids.add(board["uid"])
        assert len(uids) == len(expected)
        rules = yaml.safe_load((provisioning / "alerting" / "openbranch.yaml").read_text())
        assert rules == yaml.safe_load(build(fleet_of(inventory))[ALERT_RULES_FILE])
        assert rules["groups"][0]["folder"] == provider["folder"]
        jsonschema.validate(
            rules, json.loads((ROOT / "dashboards" / "alert-rules.schema.json").read_text())
        )
