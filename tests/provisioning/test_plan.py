"""plan after apply reports nothing; editing one branch changes exactly that branch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AARHUS = ROOT / "examples" / "inventories" / "aarhus.yaml"


def provision(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "openbranch.edge.cli", "provision", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=120,
    )
    return result.stdout


def test_plan_apply_plan_then_one_branch_edit(tmp_path: Path) -> None:
    out, secrets = str(tmp_path / "render"), str(tmp_path / "secrets")
    inventory = tmp_path / "aarhus.yaml"
    inventory.write_text(AARHUS.read_text(encoding="utf-8"), encoding="utf-8")
    first = provision("plan", str(inventory), "--out", out, "--secrets", secrets)
    assert "   added  gateways/hasle.yaml" in first
    provision("apply", str(inventory), "--out", out, "--secrets", secrets)
    assert (
        provision("plan", str(inventory), "--out", out, "--secrets", secrets).strip()
        == "no changes"
    )
    assert (
        provision("apply", str(inventory), "--out", out, "--secrets", secrets).strip()
        == "no changes"
    )
    text = inventory.read_text(encoding="utf-8").replace("occupancy_cap: 120", "occupancy_cap: 90")
    inventory.write_text(text, encoding="utf-8")
    changed = provision("plan", str(inventory), "--out", out, "--secrets", secrets).splitlines()
    assert changed == [" changed  gateways/hasle.yaml"]


def test_rotate_changes_that_gateways_account_only(tmp_path: Path) -> None:
    out, secrets = str(tmp_path / "render"), str(tmp_path / "secrets")
    provision("apply", str(AARHUS), "--out", out, "--secrets", secrets)
    before = (tmp_path / "secrets" / "mqtt" / "gw-hasle").read_text()
    said = provision("rotate", str(AARHUS), "hasle", "--secrets", secrets)
    assert before.strip() not in said  # never printed
    assert (tmp_path / "secrets" / "mqtt" / "gw-hasle").read_text() != before
    assert provision("plan", str(AARHUS), "--out", out, "--secrets", secrets).splitlines() == [
        " changed  mosquitto/passwd"
    ]
