"""The operator's secrets directory: generated credentials, readable by the operator only.

Each secret is one file (mode 0600) in a folder (mode 0700), created on first use with a
random value, rotated on request, and never printed or written into a rendered config.
"""

from __future__ import annotations

import os
import secrets as random
from pathlib import Path

__all__ = ["Secrets"]


class Secrets:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def _path(self, name: str) -> Path:
        if ".." in Path(name).parts or name.startswith("/"):
            raise ValueError(f"secret name {name!r} must stay inside the secrets folder")
        return self.root / name

    def get(self, name: str) -> str:
        """The secret called ``name``, created when it does not exist yet."""
        path = self._path(name)
        if not path.exists():
            self._write(path, random.token_urlsafe(32))
        return path.read_text(encoding="utf-8").strip()

    def peek(self, name: str) -> str | None:
        """The secret called ``name``, or None when there is none (nothing is created)."""
        path = self._path(name)
        return path.read_text(encoding="utf-8").strip() if path.exists() else None

    def put(self, name: str, value: str) -> None:
        """Keep ``value`` (one line) as ``name``: something derived from a secret."""
        self._write(self._path(name), value)

    def rotate(self, name: str) -> None:
        self._write(self._path(name), random.token_urlsafe(32))

    def _write(self, path: Path, value: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value + "\n")
        os.chmod(path, 0o600)
