"""YAML documents that remember where each value was written, and errors that say so.

Every configuration file of OpenBranch (gateway configs, device profiles, the fleet inventory)
is loaded through here, so that every error reads the same way::

    gateway.yaml:14: devices[2].transport.unit_id: 300 is not in 1..247

Limits, checked before the data is built, so that no file can make the loader run for minutes
or out of memory: at most ``MAX_BYTES`` of text, at most ``MAX_VALUES`` values once every alias
is expanded (a 435-byte "billion laughs" expands to 10**9), nested at most ``MAX_DEPTH`` deep.
A value YAML itself cannot build (``2026-02-30`` read as a date, an integer of more than 4,300
digits) and a control character anywhere in the text (a raw byte, or an escape such as
``\\0`` in a quoted string; tab and newline are layout) are located errors too.

Exceptions:
    ConfigError            one or more problems, each with file, line and field path
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "ConfigError",
    "Document",
    "Location",
    "Problem",
    "control_character",
    "load_yaml",
    "parse_yaml",
    "validate",
]

MAX_BYTES = 1_000_000  # a branch's config is a few kilobytes; an inventory of 200 branches ~200 kB
MAX_VALUES = 200_000  # values (scalars, lists, mappings) with every alias expanded
MAX_DEPTH = 64  # how deep lists and mappings nest

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
    """Parsed YAML data plus the line of every mapping key and sequence item.

    ``problems``: what the parser found wrong in values it could still build (a control
    character); ``validate`` reports them with the model's own problems, so one run names
    every place at fault.
    """

    def __init__(self, *, name: str, data: Any, lines: dict[Location, int]) -> None:
        self.name = name
        self.data = data
        self._lines = lines
        self.problems: list[Problem] = []

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
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([Problem(str(path), None, (), f"cannot read: {exc.strerror}")]) from exc
    if len(raw) > MAX_BYTES:
        raise ConfigError([Problem(str(path), None, (), f"larger than {MAX_BYTES:,} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(path), None, (), f"not UTF-8 text: {exc}")]) from exc
    return parse_yaml(text, name=str(path))


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's Cc: C0, DEL and C1
_STRAY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # Cc but tab, LF and CR


def control_character(text: str) -> str | None:
    """The first control character of ``text`` (tab and newline included) as ``U+000A``, or
    None. Tag values, topics and names that reach other formats must have none."""
    found = _CONTROL.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def _stray_control(text: str) -> tuple[int, str] | None:
    """The line and code of the first control character other than tab, LF and CR."""
    found = _STRAY.search(text)
    if found is None:
        return None
    return text.count("\n", 0, found.start()) + 1, f"U+{ord(found.group()):04X}"


class _Loader(yaml.SafeLoader):
    """SafeLoader whose value errors (a date that does not exist, an integer Python will not
    read) carry the value's position, like its syntax errors."""

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a date or time: {exc}", node.start_mark
            ) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_int(node)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"{str(node.value)[:20]}...: {exc}", node.start_mark
            ) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def parse_yaml(text: str, *, name: str) -> Document:
    """Parse one YAML document within the limits (see the module doc); every problem is a
    ConfigError with a line: syntax, duplicate keys, limits, values YAML cannot build."""
    if len(text) > MAX_BYTES:
        raise ConfigError([Problem(name, None, (), f"larger than {MAX_BYTES:,} bytes")])
    stray = _stray_control(text)
    if stray is not None:
        raise ConfigError([Problem(name, stray[0], (), f"control character {stray[1]}")])
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError([Problem(name, line, (), f"invalid YAML: {exc.problem}")]) from exc
    except yaml.YAMLError as exc:  # a reader error: a character YAML does not allow
        raise ConfigError([Problem(name, None, (), f"invalid YAML: {exc}")]) from exc
    except RecursionError:
        raise ConfigError([Problem(name, None, (), f"nested more than {MAX_DEPTH} deep")]) from None
    if node is None:
        raise ConfigError([Problem(name, 1, (), "the document is empty")])
    _check_size(node, name)
    lines: dict[Location, int] = {}
    problems: list[Problem] = []
    _index(node, (), lines, problems, name)
    if problems:
        raise ConfigError(problems)
    loader = _Loader(text)
    try:
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:  # a constructor error (e.g. a date that does not exist)
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(name, line, _loc_at(lines, line), problem)]) from exc
    finally:
        loader.dispose()
    document = Document(name=name, data=data, lines=lines)
    document.problems = list(_controls(data, (), document))
    return document


def _check_size(root: yaml.Node, name: str) -> None:
    """Refuse a document that expands, through its aliases, to more than ``MAX_VALUES`` values
    or nests deeper than ``MAX_DEPTH``; counted over the node graph (each node once), so the
    check itself is as cheap as the text."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) below and with it
    busy: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > MAX_DEPTH:
            raise ConfigError(
                [Problem(name, node.start_mark.line + 1, (), f"nested more than {MAX_DEPTH} deep")]
            )
        if id(node) in busy:
            raise ConfigError([Problem(name, node.start_mark.line + 1, (), "a recursive alias")])
        busy.add(id(node))
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        count, deepest = 1, 0
        for child in children:
            n, d = measure(child, depth + 1)
            count += n
            deepest = max(deepest, d)
            if count > MAX_VALUES:
                raise ConfigError(
                    [
                        Problem(
                            name,
                            node.start_mark.line + 1,
                            (),
                            f"more than {MAX_VALUES:,} values once its aliases are expanded",
                        )
                    ]
                )
        busy.discard(id(node))
        sizes[id(node)] = (count, deepest + 1)
        return sizes[id(node)]

    measure(root, 1)


def _loc_at(lines: dict[Location, int], line: int | None) -> Location:
    """The deepest location written on ``line`` (to name the field of a value error)."""
    if line is None:
        return ()
    on_line = [loc for loc, at in lines.items() if at == line]
    return max(on_line, key=len, default=())


def _controls(data: Any, loc: Location, document: Document) -> Iterable[Problem]:
    """A problem for each key or text value holding a control character other than tab and
    newline (``\\0`` or ``\\e`` in a quoted string: the text has none, its value does)."""
    stack: list[tuple[Any, Location]] = [(data, loc)]
    seen: set[int] = set()
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            stray = _stray_control(node.replace("\n", ""))
            if stray is not None:
                yield document.problem(where, f"control character {stray[1]}")
        elif isinstance(node, dict | list) and id(node) not in seen:
            seen.add(id(node))  # an alias is checked once
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                if isinstance(key, str) and (stray := _stray_control(key)) is not None:
                    yield document.problem(where, f"control character {stray[1]} in a key")
                    continue
                stack.append((value, (*where, key)))


def _index(
    node: yaml.Node, loc: Location, lines: dict[Location, int], problems: list[Problem], name: str
) -> None:
    """The line of every key and item (each node once: an alias is not walked again)."""
    stack: list[tuple[yaml.Node, Location]] = [(node, loc)]
    walked: set[int] = set()
    while stack:
        node, loc = stack.pop()
        lines.setdefault(loc, node.start_mark.line + 1)
        if id(node) in walked:
            continue
        walked.add(id(node))
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
                stack.append((value_node, (*loc, key)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                stack.append((item, (*loc, i)))


def validate(model: type[M], document: Document, *, context: dict[str, Any] | None = None) -> M:
    """Validate ``document`` as ``model``; every pydantic error becomes a located Problem,
    reported with the document's own problems (one per place: the parser's first)."""
    try:
        result = model.model_validate(document.data, context=context)
    except ValidationError as exc:
        found = list(_problems(exc, document))
    else:
        if not document.problems:
            return result
        found = []
    seen = {p.loc for p in document.problems}
    merged = document.problems + [p for p in found if p.loc not in seen]
    raise ConfigError(sorted(merged, key=lambda p: p.line or 0))


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
