"""The README's first command, `bash scripts/demo`, end to end (shortened): the demo runs, then
the climate report of the simulated day is written as HTML and its path printed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scripts_demo_ends_with_the_report_of_the_day(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    done = subprocess.run(
        [
            *("bash", str(ROOT / "scripts" / "demo")),
            *("--duration", "6", "--date", "2026-11-25", "--no-outage", "--no-influxdb"),
            *("--view-every", "100", "--workdir", str(workdir)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env={**os.environ, "OPENBRANCH_SERVICES": "0"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = re.search(r"Climate report for the simulated day: (\S+\.html)", done.stdout)
    assert found, done.stdout[-2000:]
    report = Path(found.group(1))
    assert report == (workdir / "energy-report-2026-11-25.html").resolve()
    page = report.read_text(encoding="utf-8")
    assert "<svg" in page and "2026" in page
    assert "Hasle Bibliotek (simulated)" in page  # the demo branch, named from branches.yaml
