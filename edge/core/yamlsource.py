"""YAML documents that remember where each value was written, and errors that say so.

Every configuration file of OpenBranch (gateway configs, device profiles, the fleet inventory)
is loaded through here, so that every error reads the same way::

    gateway.yaml:14: devices[2].transport.unit_id: 300 is not in 1..247

Exceptions:
    ConfigError            one or more problems, each with file, line and field path
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["ConfigError", "Document", "Location", "Problem", "load_yaml", "parse_yaml", "validate"]

Location = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    loc: Location
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = format_loc(self.loc)
        return f"{where}: {field}: {self.message}" if field else f"{where}: {self.message}"


class ConfigError(ValueError):
    """One or more problems in a configuration document; ``str()`` gives one line each."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class LocatedValueError(ValueError):
    """A validator's error about one part of the value it checks (``loc`` is relative to it).

    A model validator sees the whole model; raising this names the element at fault (say
    ``("points", 3)``) so the problem is reported at that element's line, not the model's.
    """

    def __init__(self, loc: Location, message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)


def format_loc(loc: Location) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class Document:
    """Parsed YAML data plus the line of every mapping key and sequence item."""

    def __init__(self, *, name: str, data: Any, lines: dict[Location, int]) -> None:
        self.name = name
        self.data = data
        self._lines = lines

    def line_of(self, loc: Location) -> int | None:
        """The line of the deepest part of ``loc`` that exists in the document."""
        for cut in range(len(loc), -1, -1):
            line = self._lines.get(tuple(loc[:cut]))
            if line is not None:
                return line
        return None

    def problem(self, loc: Location, message: str) -> Problem:
        return Problem(self.name, self.line_of(loc), loc, message)

    def error(self, loc: Location, message: str) -> ConfigError:
        return ConfigError([self.problem(loc, message)])


def load_yaml(path: Path | str) -> Document:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), None, (), f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), None, (), f"not UTF-8 text: {exc}")]) from exc
    return parse_yaml(text, name=str(path))


def parse_yaml(text: str, *, name: str) -> Document:
    """Parse one YAML document; duplicate keys and syntax errors are ConfigErrors with a line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError([Problem(name, line, (), f"invalid YAML: {exc.problem}")]) from exc
    if node is None:
        raise ConfigError([Problem(name, 1, (), "the document is empty")])
    lines: dict[Location, int] = {}
    problems: list[Problem] = []
    _index(node, (), lines, problems, name)
    if problems:
        raise ConfigError(problems)
    try:
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:  # a constructor error (e.g. a bad timestamp)
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([Problem(name, line, (), f"invalid YAML: {exc}")]) from exc
    return Document(name=name, data=data, lines=lines)


def _index(
    node: yaml.Node, loc: Location, lines: dict[Location, int], problems: list[Problem], name: str
) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                problems.append(
                    Problem(name, key_node.start_mark.line + 1, (*loc, key), "duplicate key")
                )
            seen.add(key)
            lines[(*loc, key)] = key_node.start_mark.line + 1
            _index(value_node, (*loc, key), lines, problems, name)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), lines, problems, name)


def validate(model: type[M], document: Document, *, context: dict[str, Any] | None = None) -> M:
    """Validate ``document`` as ``model``; every pydantic error becomes a located Problem."""
    try:
        return model.model_validate(document.data, context=context)
    except ValidationError as exc:
        raise ConfigError(list(_problems(exc, document))) from None


def _problems(exc: ValidationError, document: Document) -> Iterable[Problem]:
    for err in exc.errors(include_url=False):
        raw = tuple(err["loc"])
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, LocatedValueError):
            raw = (*raw, *cause.loc)
        loc = _data_loc(document.data, raw)
        yield document.problem(loc, _message(err))


def _data_loc(data: Any, loc: Location) -> Location:
    """Drop the parts of a pydantic location that are not in the data (union tags, models)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if _contains(node, part):
            node = node[part]
            out.append(part)
        elif isinstance(node, dict) and node.get("type") == part:
            continue  # the tag of a discriminated union: the user wrote it as `type:`
        elif isinstance(node, dict) and isinstance(part, str) and not _is_tag(part):
            out.append(part)  # a missing or unknown key: name it
            node = None
        # else: a union tag or function-validator name; not part of the user's document
    return tuple(out)


def _contains(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _is_tag(part: str) -> bool:
    return part.startswith(("function-", "tagged-union[")) or "[" in part


def _message(err: Any) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "missing":
        return "required, but not given"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"type {ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
    return msg[0].lower() + msg[1:] if msg else kind
