"""Mode to desired state, and the planned actions staff review with `schedule plan`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from openbranch.edge.core.schedule import ClosingPolicy, Mode, OpeningHours
from openbranch.edge.hours.calendar import Calendar
from openbranch.edge.hours.policy import DESIRED, planned_actions

CPH = ZoneInfo("Europe/Copenhagen")
ROOT = Path(__file__).resolve().parents[3]
HOURS = OpeningHours.model_validate(
    {
        "weekly": {
            "wed": [
                {"start": "10:00", "end": "17:00", "mode": "staffed"},
                {"start": "17:00", "end": "22:00", "mode": "self_service"},
            ]
        }
    }
)


def test_every_mode_has_a_desired_state_and_only_closed_arms() -> None:
    assert set(DESIRED) == set(Mode)
    assert [m for m, d in DESIRED.items() if d.alarm == "armed"] == [Mode.CLOSED]
    assert DESIRED[Mode.EMERGENCY].lights == "on"
    assert DESIRED[Mode.EMERGENCY].light_level == 100.0
    assert DESIRED[Mode.EMERGENCY].door == "exit_only"  # stop admitting, egress stays free


def test_closing_is_announced_pcs_go_first_and_the_alarm_waits_for_empty() -> None:
    calendar = Calendar(HOURS, CPH)
    day = datetime(2026, 11, 25, tzinfo=CPH)
    actions = planned_actions(calendar.transitions(day, day + timedelta(days=1)), ClosingPolicy())
    timeline = [(a.at.astimezone(CPH).strftime("%H:%M"), a.what, a.detail) for a in actions]
    closing = [t for t in timeline if t[0] >= "21:45"]
    assert closing == [
        ("21:45", "announce", "closing in 15 min"),
        ("21:45", "pcs", "off"),
        ("21:50", "announce", "closing in 10 min"),
        ("21:55", "announce", "closing in 5 min"),
        ("22:00", "doors", "exit_only: stop admitting"),
        ("22:00", "closing sequence", "wait until empty; then lights off, lock, arm the alarm"),
    ]
    assert not any(what == "alarm" and detail == "armed" for _, what, detail in timeline)
    opening = [t for t in timeline if t[0] == "10:00"]
    assert opening[0] == ("10:00", "alarm", "disarmed")  # before the doors open
    assert ("10:00", "doors", "free") in opening


def test_clear_out_gap_between_staffed_and_self_service() -> None:
    calendar = Calendar(HOURS, CPH)
    day = datetime(2026, 11, 25, tzinfo=CPH)
    actions = planned_actions(
        calendar.transitions(day, day + timedelta(days=1)), ClosingPolicy(clear_out_gap=10)
    )
    doors = [
        (a.at.astimezone(CPH).strftime("%H:%M"), a.detail) for a in actions if a.what == "doors"
    ]
    assert ("17:10", "access_control") in doors
    assert ("17:00", "access_control") not in doors


def test_schedule_plan_cli_text_and_json() -> None:
    config = ROOT / "examples" / "demo" / "gateway.yaml"
    base = [
        sys.executable,
        "-m",
        "openbranch.edge.cli",
        "schedule",
        "plan",
        str(config),
        "--from",
        "2026-12-23",
    ]
    text = subprocess.run(
        [*base, "--days", "2"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    lines = text.stdout.splitlines()
    assert lines[0].endswith("2026-12-23 + 2 days, 4 mode changes")  # 24 Dec closed
    assert "  10:00  self_service -> staffed  (Christmas reading night)" in lines
    raw = subprocess.run(
        [*base, "--days", "7", "--json"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    plan = json.loads(raw.stdout)
    days = {t["local"][:10] for t in plan["transitions"]}
    assert "2026-12-24" not in days and "2026-12-25" not in days  # holidays closed
    assert plan["transitions"][0]["to"] == "self_service"
