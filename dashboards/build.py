"""Every dashboard and the alert rules for a fleet, as the files Grafana provisions."""

from __future__ import annotations

import json
from collections.abc import Mapping

from openbranch.dashboards.alerts import alert_rules_yaml
from openbranch.dashboards.branch import branch_dashboard
from openbranch.dashboards.energy import energy_dashboard
from openbranch.dashboards.extended import extended_dashboard
from openbranch.dashboards.fleet import fleet_dashboard
from openbranch.dashboards.model import Dashboard, Fleet

__all__ = ["ALERT_RULES_FILE", "all_dashboards", "build"]

ALERT_RULES_FILE = "alert-rules.yaml"


def all_dashboards(fleet: Fleet) -> dict[str, Dashboard]:
    """By file stem: fleet, branch, energy, extended-hours."""
    return {
        "fleet": fleet_dashboard(fleet),
        "branch": branch_dashboard(fleet),
        "energy": energy_dashboard(fleet),
        "extended-hours": extended_dashboard(fleet),
    }


def build(fleet: Fleet) -> Mapping[str, str]:
    """File name -> text: one JSON per dashboard, and the alert rules (Grafana's YAML)."""
    files = {
        f"{stem}.json": json.dumps(board.to_json(), indent=2, ensure_ascii=False) + "\n"
        for stem, board in all_dashboards(fleet).items()
    }
    files[ALERT_RULES_FILE] = alert_rules_yaml(fleet)
    return files
