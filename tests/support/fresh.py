"""Running a short Python script in a fresh interpreter, from the repository's root: for a
measurement pytest's own process would blur (memory) or a limit it must not share (file
descriptors, file size)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["run_python"]

ROOT = Path(__file__).resolve().parents[2]


def run_python(script: str, *args: str, timeout: float = 120) -> list[str]:
    """Run ``script`` with ``args``; fail the test on a non-zero exit (with its stderr);
    return its standard output's lines."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()
