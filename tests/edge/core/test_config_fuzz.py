"""Property: whatever file an operator (or an attacker) hands the gateway config loader, the
answer is a valid config or a located ConfigError, never another exception (issue 13).

Two sources of files: random YAML documents (random data dumped as YAML, and random text),
and random mutations of the demo's config (a value replaced by random data, a key removed or
added, random characters spliced into the text)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openbranch.edge.core.config import GatewayConfig, load_gateway_config
from openbranch.edge.core.registry import default_registry
from openbranch.edge.core.yamlsource import ConfigError, Problem

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo" / "gateway.yaml"
DEMO_TEXT = DEMO.read_text(encoding="utf-8")
DEMO_DATA = yaml.safe_load(DEMO_TEXT)
CHECK = default_registry().check_device

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()  # NaN and the infinities too
    | st.text(max_size=40)  # control characters, surrogates excluded by YAML's dumper
    | st.sampled_from(["10s", "5m", "500ms", "08:00", "24:00", "staffed", "closed", "modbus_tcp"])
    | st.dates(min_value=dt.date(1, 1, 1))
    | st.sampled_from(["2026-02-30", "9999-99-99", "'lib\"raries'", "hall\nzone", "a\x00b"])
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=12) | st.sampled_from(list(DEMO_DATA)), children, max_size=4
        )
    ),
    max_leaves=16,
)


def outcome(path: Path) -> str:
    """ "valid", or "error" for a located ConfigError; anything else escapes the test."""
    problems: tuple[Problem, ...] = ()
    try:
        config = load_gateway_config(path, check_device=CHECK)
    except ConfigError as exc:
        problems = exc.problems
    if not problems:
        assert isinstance(config, GatewayConfig)
        return "valid"
    for problem in problems:
        assert problem.file == str(path)
        assert problem.message
        assert problem.line is not None or problem.loc == (), problem
    return "error"


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _paths(data: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*at, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, (*at, i))
    return out


DEMO_PATHS = _paths(DEMO_DATA)[1:]


def _mutate(path: tuple[Any, ...], action: str, value: Any) -> Any:
    data = yaml.safe_load(DEMO_TEXT)  # a fresh copy
    node = data
    for part in path[:-1]:
        node = node[part]
    last = path[-1]
    if action == "replace":
        node[last] = value
    elif action == "delete":
        del node[last]
    elif isinstance(node[last], dict):
        node[last]["x_extra"] = value
    elif isinstance(node[last], list):
        node[last].append(value)
    else:
        node[last] = [node[last], value]
    return data


fuzz = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@fuzz
@given(data=VALUES)
def test_random_yaml_documents(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(_dump(data), encoding="utf-8")
    assert outcome(path) in ("valid", "error")


@fuzz
@given(text=st.text(max_size=300))
def test_random_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    assert outcome(path) in ("valid", "error")


@fuzz
@given(
    where=st.sampled_from(DEMO_PATHS),
    action=st.sampled_from(["replace", "delete", "add"]),
    value=VALUES,
)
def test_mutations_of_the_demo_config(
    tmp_path: Path, where: tuple[Any, ...], action: str, value: Any
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(_dump(_mutate(where, action, value)), encoding="utf-8")
    assert outcome(path) in ("valid", "error")


@fuzz
@given(at=st.integers(min_value=0, max_value=len(DEMO_TEXT)), text=st.text(max_size=8))
def test_characters_spliced_into_the_demo_config(tmp_path: Path, at: int, text: str) -> None:
    path = tmp_path / "gateway.yaml"
    spliced = DEMO_TEXT[:at] + text + DEMO_TEXT[at:]
    path.write_bytes(spliced.encode("utf-8", "surrogatepass"))
    assert outcome(path) in ("valid", "error")


def test_the_demo_config_itself_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(_dump(_mutate(("store", "path"), "replace", "x.db")), encoding="utf-8")
    assert outcome(path) == "valid"
