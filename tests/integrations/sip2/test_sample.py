"""The SIP2 sample config validates, and a wrong library_system section is refused at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from openbranch.edge.core.config import ConfigError, load_gateway_config

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "integrations" / "sip2" / "sample.yaml"


def test_sample_validates() -> None:
    config = load_gateway_config(SAMPLE)
    library = config.library_system
    assert library is not None
    assert (library.host, library.port, library.tls, library.institution_id) == (
        "sip2.library.example",
        6001,
        True,
        "DK-761500",
    )
    assert library.login_password is not None and library.login_password.file is not None


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("  login_password: {file: /etc/openbranch/sip2-password}", "", "give both login_user"),
        ("  port: 6001", "  port: 70000", "gateway.yaml:11: library_system.port"),
        ("  institution_id: DK-761500", "  institution_id: ''", "gateway.yaml:14: library_system"),
        ("  timeout: 3s", "  timeout: 0", "timeout must be above 0"),
        ("  login_user: {file", "  login_user: gw-user  #{file", "secrets are never written"),
    ],
)
def test_problems_are_located(tmp_path: Path, old: str, new: str, expected: str) -> None:
    lines = SAMPLE.read_text().splitlines()
    bad = tmp_path / "gateway.yaml"
    bad.write_text(
        "\n".join(new + line[len(old) :] if line.startswith(old) else line for line in lines)
    )
    with pytest.raises(ConfigError) as caught:
        load_gateway_config(bad)
    assert expected in str(caught.value)
