"""The operator's secrets directory: generated credentials, readable by the operator only.

Each secret is one file (mode 0600), created on first use with a random value, rotated on
request, and never printed or written into a rendered config. A folder created here is 0700;
a folder that exists keeps its mode (it is the operator's). Symlinks inside the folder are
refused, never followed. ``Secrets(root, create=False)`` reads only: a missing secret gets a
value for this run (listed in ``missing``) and nothing is written, for ``provision plan``.

Exceptions:
    SecretsError        the folder or a secret in it cannot be used as given
"""

from __future__ import annotations

import os
import secrets as random
from pathlib import Path

__all__ = ["Secrets", "SecretsError"]


class SecretsError(ValueError):
    """The secrets folder cannot be used as given; ``str()`` names the path and the reason."""


class Secrets:
    def __init__(self, root: Path | str, *, create: bool = True) -> None:
        self.root = Path(root)
        self.create = create
        self.missing: list[str] = []  # secrets a read-only run made up (create=False)
        self._unsaved: dict[str, str] = {}
        if self.root.exists() and not self.root.is_dir():
            raise SecretsError(f"{self.root} is not a folder (give --secrets a folder)")
        if create and not self.root.exists():
            self.root.mkdir(parents=True, mode=0o700)
            os.chmod(self.root, 0o700)  # created here: not subject to the umask

    def _path(self, name: str) -> Path:
        if ".." in Path(name).parts or name.startswith("/"):
            raise SecretsError(f"secret name {name!r} must stay inside the secrets folder")
        path = self.root
        for part in Path(name).parts:
            path = path / part
            if path.is_symlink():
                raise SecretsError(f"{path}: a symlink in the secrets folder, never followed")
        return path

    def _read(self, name: str) -> str | None:
        if name in self._unsaved:
            return self._unsaved[name]
        path = self._path(name)
        if not path.exists():
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="utf-8") as f:
            return f.read().strip()

    def get(self, name: str) -> str:
        """The secret called ``name``, created when it does not exist yet."""
        value = self._read(name)
        if value is None:
            value = random.token_urlsafe(32)
            if not self.create:
                self.missing.append(name)
            self._store(name, value)
        return value

    def peek(self, name: str) -> str | None:
        """The secret called ``name``, or None when there is none (nothing is created)."""
        return self._read(name)

    def put(self, name: str, value: str) -> None:
        """Keep ``value`` (one line) as ``name``: something derived from a secret."""
        self._store(name, value)

    def rotate(self, name: str) -> None:
        self._store(name, random.token_urlsafe(32))

    def _store(self, name: str, value: str) -> None:
        path = self._path(name)
        if not self.create:
            self._unsaved[name] = value
            return
        made = []
        folder = path.parent
        while not folder.exists():
            made.append(folder)
            folder = folder.parent
        for folder in reversed(made):
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)  # created here
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(value + "\n")
