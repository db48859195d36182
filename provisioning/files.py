"""The folder a render is written to: the files provisioning owns there, and nothing else.

``render``/``apply`` write a manifest (``.openbranch-manifest.json``) listing every file they
wrote; the next render deletes only files listed there that it no longer renders. A file in
the way that no render wrote is an error unless it already holds exactly what would be
written. Paths inside the folder are opened one component at a time with ``O_NOFOLLOW``, so a
symlink inside it is refused, never followed; the folder itself may be a link the operator
chose. Folders that exist keep their modes; folders created here get the default (umask).
Files are replaced atomically (a temporary file, then rename) with their own mode.

Exceptions:
    FilesError          the folder cannot be read or written as provisioning's own
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ["MANIFEST", "Changes", "FilesError", "plan", "write"]

MANIFEST = ".openbranch-manifest.json"
DEFAULT_MODE = 0o644


class FilesError(ValueError):
    """The output folder cannot be used as given; ``str()`` names the path and the reason."""


@dataclass(frozen=True)
class Changes:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "changed": self.changed, "removed": self.removed}


def _parts(name: str) -> tuple[str, ...]:
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(p in ("..", ".", "") for p in path.parts):
        raise FilesError(f"{name!r} is not a path inside the output folder")
    return path.parts


@contextlib.contextmanager
def _root(out: Path, *, create: bool) -> Iterator[int | None]:
    """A descriptor of ``out`` (None if it does not exist and ``create`` is false)."""
    if out.exists() and not out.is_dir():
        raise FilesError(f"{out} is not a folder (give --out a folder for the rendered files)")
    if not out.exists():
        if not create:
            yield None
            return
        out.mkdir(parents=True)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_dir(root: int, parts: tuple[str, ...], out: Path, *, create: bool) -> int | None:
    """A descriptor of the folder ``parts`` below ``root``, never through a symlink."""
    fd = os.dup(root)
    try:
        for i, part in enumerate(parts):
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                where = out.joinpath(*parts[: i + 1])
                why = "a symlink, never followed" if where.is_symlink() else _why(exc)
                raise FilesError(f"{where}: not a folder of the render ({why})") from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def _why(exc: OSError) -> str:
    return "a symlink, never followed" if exc.errno == errno.ELOOP else exc.strerror or str(exc)


def _read(root: int | None, name: str, out: Path) -> tuple[str, int] | None:
    """(text, mode) of ``name``, or None when it does not exist; never through a symlink."""
    if root is None:
        return None
    *folders, leaf = _parts(name)
    fd = _open_dir(root, tuple(folders), out, create=False)
    if fd is None:
        return None
    try:
        info = os.stat(leaf, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        os.close(fd)
        return None
    try:
        if not stat.S_ISREG(info.st_mode):
            kind = "a symlink, never followed" if stat.S_ISLNK(info.st_mode) else "not a file"
            raise FilesError(f"{out / name}: {kind}")
        file_fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        with os.fdopen(file_fd, "rb") as f:
            data = f.read()
        try:
            return data.decode("utf-8"), stat.S_IMODE(info.st_mode)
        except UnicodeDecodeError:
            return "\0not text", stat.S_IMODE(info.st_mode)  # differs from any render
    finally:
        os.close(fd)


def _manifest(root: int | None, out: Path) -> list[str]:
    found = _read(root, MANIFEST, out)
    if found is None:
        return []
    try:
        names = json.loads(found[0])["files"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TypeError
        for name in names:
            _parts(name)
    except (ValueError, KeyError, TypeError) as exc:
        raise FilesError(f"{out / MANIFEST}: not a manifest of a render ({exc})") from None
    return names


def plan(files: Mapping[str, str], out: Path, modes: Mapping[str, int] | None = None) -> Changes:
    """What writing ``files`` to ``out`` would add, change and remove; reads only."""
    modes = modes or {}
    with _root(out, create=False) as root:
        owned = set(_manifest(root, out))
        changes = Changes()
        strangers = []
        for name in sorted(files):
            found = _read(root, name, out)
            if found is None:
                changes.added.append(name)
            elif found != (files[name], modes.get(name, DEFAULT_MODE)):
                if name in owned:
                    changes.changed.append(name)
                else:
                    strangers.append(name)
        for name in sorted(owned - set(files)):
            if _read(root, name, out) is not None:
                changes.removed.append(name)
    if strangers:
        raise FilesError(
            f"{out}: {', '.join(strangers)} exist(s) but no render wrote them (they are not in"
            f" {MANIFEST}); move them away or render into another folder"
        )
    return changes


def _replace(fd: int, leaf: str, data: bytes, mode: int) -> None:
    temp = f".{leaf}.openbranch-tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp, dir_fd=fd)
    file_fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=fd)
    with os.fdopen(file_fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, leaf, src_dir_fd=fd, dst_dir_fd=fd)


def write(
    files: Mapping[str, str],
    out: Path,
    changes: Changes,
    modes: Mapping[str, int] | None = None,
) -> None:
    """Write what ``changes`` (from ``plan``) says, remove what it says, then the manifest."""
    modes = modes or {}
    with _root(out, create=True) as root:
        assert root is not None
        for name in [*changes.added, *changes.changed]:
            *folders, leaf = _parts(name)
            fd = _open_dir(root, tuple(folders), out, create=True)
            assert fd is not None
            try:
                _replace(fd, leaf, files[name].encode("utf-8"), modes.get(name, DEFAULT_MODE))
            finally:
                os.close(fd)
        for name in changes.removed:
            *folders, leaf = _parts(name)
            fd = _open_dir(root, tuple(folders), out, create=False)
            if fd is not None:
                try:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leaf, dir_fd=fd)
                finally:
                    os.close(fd)
        manifest = json.dumps({"files": sorted(files)}, indent=1) + "\n"
        if _read(root, MANIFEST, out) != (manifest, DEFAULT_MODE):
            _replace(root, MANIFEST, manifest.encode("utf-8"), DEFAULT_MODE)
