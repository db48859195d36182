"""The gateway's status file, ``<store>.status``: what ``gateway status`` (another process)
shows of the running gateway — each task's state, the alerts raised, the store's health.

It must stay writable when the disk is full, which is when it matters most: the file is
allocated at full size when the gateway starts (``SIZE`` bytes) and every update overwrites
it in place (JSON padded with spaces), so an update needs no new disk blocks. A status larger
than that is written whole and may then fail on a full disk; that is logged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["SIZE", "StatusFile", "read_status", "status_path"]

log = logging.getLogger(__name__)

SIZE = 64 * 1024


def status_path(store: Path | str) -> Path:
    store = Path(store)
    return store.with_name(store.name + ".status")


class StatusFile:
    def __init__(self, store: Path | str) -> None:
        self.path = status_path(store)
        self._fd: int | None = None
        self._failed = False

    def open(self) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if os.fstat(self._fd).st_size < SIZE:
            os.posix_fallocate(self._fd, 0, SIZE)

    def write(self, status: Mapping[str, Any]) -> None:
        """Overwrite the status in place; a failure is logged once per outage, never raised."""
        if self._fd is None:
            return
        data = json.dumps(status, default=str).encode()
        try:
            if len(data) < SIZE:
                data = data.ljust(SIZE)
            else:
                os.ftruncate(self._fd, len(data))
            os.pwrite(self._fd, data, 0)
        except OSError as exc:
            if not self._failed:
                log.error("%s: could not write the status: %s", self.path, exc)
            self._failed = True
        else:
            self._failed = False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_status(store: Path | str) -> dict[str, Any] | None:
    """The status a gateway on ``store`` wrote last (None: none written yet)."""
    try:
        text = status_path(store).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not text:
        return None
    status: dict[str, Any] = json.loads(text)
    return status
