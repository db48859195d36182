"""The short soak (issue 14): the demo branch for a simulated day with every kind of fault
once (bench/soak.py --days 1), against real Mosquitto, influxd, Modbus simulators and a
gateway process; every invariant holds and every fault's alert was seen and cleared.

The soak needs root (a private mount namespace, a loop-mounted ext4 for the store).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KINDS = (
    "mosquitto stopped",
    "mosquitto killed",
    "influxd killed",
    "influxd answers 503",
    "influxd answers 429",
    "influxd link slow",
    "disk bound reached",
    "silent",
    "answers exceptions",
    "reads NaN; MQTT garbage",
    "sigterm",
    "SIGKILL (random)",
    "SIGKILL (closing)",
    "clock stepped to +300 s",
    "store's file system read-only",
    "disk_full",
    "no_files",
)


@pytest.mark.timeout(420)
def test_a_simulated_day_with_every_fault_keeps_every_invariant(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "soak.py")),
            *("--days", "1", "--speed", "800", "--report-every", "0"),
            *("--workdir", str(tmp_path / "soak")),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out = done.stdout + done.stderr
    stacks = tmp_path / "soak" / "gateway.yaml.stacks"  # a hung stop's threads, if any
    if stacks.exists() and stacks.stat().st_size:
        out += "\n" + stacks.read_text(encoding="utf-8", errors="replace")[-8000:]
    assert "invariant violations: 0" in out, out[-14000:]
    assert done.returncode == 0, out[-3000:]
    for kind in KINDS:
        assert kind in out, f"no {kind!r} fault in {out[-3000:]}"
    operator = re.search(r"operator: (\d+) alerts shown .*, (\d+) missed or not cleared", out)
    assert operator is not None and int(operator.group(1)) >= 12
    assert operator.group(2) == "0"
    produced = re.search(r"readings produced: ([\d,]+)", out)
    assert produced is not None and int(produced.group(1).replace(",", "")) > 5000
