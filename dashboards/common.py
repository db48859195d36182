"""What every OpenBranch dashboard shares: the municipality and branch variables, value
mappings for modes, and the uid scheme."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from openbranch.dashboards.influxql import BRANCH, m
from openbranch.dashboards.model import Fleet, Variable
from openbranch.edge.core import schema
from openbranch.edge.core.schedule import Mode

__all__ = ["MODE_COLOURS", "UID_MAX", "fleet_variables", "mode_mappings", "short_uid", "uid"]

UID_MAX = 40

MODE_COLOURS: Mapping[Mode, str] = {
    Mode.STAFFED: "green",
    Mode.SELF_SERVICE: "blue",
    Mode.CLOSED: "#8e8e8e",
    Mode.EMERGENCY: "red",
    Mode.MAINTENANCE: "orange",
}


def short_uid(text: str) -> str:
    """Grafana's uids are at most 40 characters: longer ones keep a prefix and a hash."""
    if len(text) <= UID_MAX:
        return text
    return f"{text[: UID_MAX - 9]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def uid(kind: str, fleet: Fleet) -> str:
    return short_uid(f"openbranch-{kind}-{fleet.id}")


def fleet_variables(fleet: Fleet) -> tuple[Variable, Variable]:
    """``municipality`` (its value: a regex of its branch ids) and ``branch`` (the branches
    reporting a mode, within the municipality; multi-value, All = ``.*``)."""
    municipality = Variable(
        name="municipality",
        label="Municipality",
        kind="custom",
        query=f"{fleet.name} : {fleet.branch_regex}",
        default=fleet.branch_regex,
        default_text=fleet.name,
        description="the municipality's branches (from the fleet inventory)",
    )
    branch = Variable(
        name="branch",
        label="Branch",
        kind="query",
        query=f"SHOW TAG VALUES FROM {m(schema.BRANCH_MODE)} WITH KEY = {BRANCH}"
        f" WHERE {BRANCH} =~ /^($municipality)$/",
        multi=True,
        include_all=True,
        all_value=".*",
        default="$__all",
        default_text="All",
    )
    return municipality, branch


def mode_mappings() -> tuple[Mapping[str, Any], ...]:
    """Value mappings that colour and name each branch mode (state timeline bands)."""
    return (
        {
            "type": "value",
            "options": {
                mode.value: {
                    "text": mode.value.replace("_", "-"),
                    "color": colour,
                    "index": i,
                }
                for i, (mode, colour) in enumerate(MODE_COLOURS.items())
            },
        },
    )
