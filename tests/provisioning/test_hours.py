"""Municipality-wide closures reach every branch's rendered gateway config, including a branch
with hours of its own (provisioning/render.py, _hours_of)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from openbranch.edge.core.registry import default_registry, load_checked
from openbranch.edge.core.schedule import Mode
from openbranch.edge.hours.calendar import Calendar
from openbranch.provisioning.inventory import load_inventory
from openbranch.provisioning.render import render
from openbranch.provisioning.secrets import Secrets

ROOT = Path(__file__).resolve().parents[2]
AARHUS = ROOT / "examples" / "inventories" / "aarhus.yaml"
CPH = ZoneInfo("Europe/Copenhagen")

FLEET_CLOSURES = """\
    municipality_closures:
      - {date: 2026-12-28, reason: city-wide IT migration}
      - {date: 2026-12-29, reason: city-wide IT migration}
"""
DOKK1_CLOSURE = """\
      municipality_closures:
        - {date: 2026-12-29, reason: Dokk1 keeps its own entry for this date}
        - {date: 2026-12-30, reason: Dokk1 building maintenance}
"""


def render_with_closures(tmp_path: Path) -> dict[str, Calendar]:
    text = AARHUS.read_text(encoding="utf-8")
    text = text.replace(
        '      sun: [{start: "08:00", end: "20:00", mode: self_service}]\n',
        '      sun: [{start: "08:00", end: "20:00", mode: self_service}]\n' + FLEET_CLOSURES,
        1,
    )
    text = text.replace(
        '        sun: [{start: "10:00", end: "16:00", mode: staffed}]\n',
        '        sun: [{start: "10:00", end: "16:00", mode: staffed}]\n' + DOKK1_CLOSURE,
        1,
    )
    assert FLEET_CLOSURES in text and DOKK1_CLOSURE in text, "the example inventory changed"
    source = tmp_path / "aarhus.yaml"
    source.write_text(text, encoding="utf-8")
    inventory = load_inventory(source, check_device=default_registry().check_device)
    calendars = {}
    for name, body in render(inventory, Secrets(tmp_path / "secrets")).items():
        if name.startswith("gateways/") and name.endswith(".yaml"):
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
            config = load_checked(path)
            assert config.hours is not None
            calendars[config.branch.id] = Calendar(config.hours, CPH)
    return calendars


def test_fleet_closures_reach_branches_with_and_without_their_own_hours(tmp_path: Path) -> None:
    calendars = render_with_closures(tmp_path)
    assert {"dokk1", "hasle"} <= set(calendars)
    noon = datetime(2026, 12, 28, 12, 0, tzinfo=CPH)  # a Monday: both branches open normally
    for branch in ("dokk1", "hasle"):
        resolution = calendars[branch].mode_at(noon)
        assert resolution.mode is Mode.CLOSED, (branch, resolution)
        assert "IT migration" in resolution.reason, (branch, resolution)
    dokk1 = {c.date.isoformat(): c.reason for c in calendars["dokk1"].hours.municipality_closures}
    assert dokk1 == {
        "2026-12-28": "city-wide IT migration",
        "2026-12-29": "Dokk1 keeps its own entry for this date",
        "2026-12-30": "Dokk1 building maintenance",
    }
    hasle = [c.date.isoformat() for c in calendars["hasle"].hours.municipality_closures]
    assert hasle == ["2026-12-28", "2026-12-29"]
    assert calendars["hasle"].mode_at(datetime(2026, 12, 30, 12, 0, tzinfo=CPH)).mode is not (
        Mode.CLOSED
    )
