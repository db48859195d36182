"""systemd's own checker on rendered units: `systemd-analyze verify`, with the units' executable
this venv's `openbranch` (the rendered path, /opt/openbranch/..., does not exist here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

__all__ = ["HERE", "INSTALLED", "verify_units"]

INSTALLED = "/opt/openbranch/.venv/bin/openbranch"  # where the rendered units expect it
HERE = str(Path(sys.executable).parent / "openbranch")


def verify_units(folder: Path, units: Mapping[str, str]) -> dict[str, str]:
    """Write ``units`` (file name -> text) into ``folder`` with this venv's executable, and
    assert that systemd-analyze finds nothing to say; returns the texts as written."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is needed (Debian package systemd)")
    written = {}
    for name, text in units.items():
        written[name] = text.replace(INSTALLED, HERE)
        (folder / name).write_text(written[name], encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", "--man=no", *(str(folder / name) for name in units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    return written
