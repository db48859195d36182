"""socat for the serial line tests: skipped without it on a developer's machine, failed in CI
(``tests/conftest.py``: ``unavailable``). ``scripts/setup`` installs it."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import unavailable


@pytest.fixture
def socat() -> str:
    """The socat binary, which makes the pseudo-terminal pairs of a simulated RS-485 line."""
    path = shutil.which("socat")
    if path is None:
        unavailable("socat is not installed (Debian package socat: apt-get install socat)")
    return path
