"""The read side: Grafana dashboards and alert rules as code, generated from ``edge.schema``.

``build(fleet)`` gives every file (dashboard JSON, alert rules YAML); ``all_dashboards(fleet)``
the typed models, whose ``targets()`` list every query with the columns it must return.
"""

from openbranch.dashboards.build import ALERT_RULES_FILE, all_dashboards, build
from openbranch.dashboards.model import BranchInfo, Dashboard, Fleet, Panel, Target, Variable

__all__ = [
    "ALERT_RULES_FILE",
    "BranchInfo",
    "Dashboard",
    "Fleet",
    "Panel",
    "Target",
    "Variable",
    "all_dashboards",
    "build",
]
