"""Fixtures that start real servers. In CI (CI=true) a missing server fails the test; on a
developer machine it skips with the reason (install with scripts/test)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.services import Influxd, Mosquitto, Service, ServiceUnavailable, VictoriaMetrics

S = TypeVar("S", bound=Service)


def start_or_fail(factory: Callable[[], S]) -> S:
    """Start a service; fail in CI and skip elsewhere when it cannot run here."""
    try:
        service = factory()
        service.start()
    except ServiceUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"required service unavailable in CI: {exc}")
        pytest.skip(f"{exc} (outside CI; with CI=true this fails)")
    return service


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    broker = start_or_fail(Mosquitto)
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def influxd() -> Iterator[Influxd]:
    server = start_or_fail(Influxd)
    yield server
    server.close()


@pytest.fixture
def influx_db(influxd: Influxd) -> Iterator[str]:
    """A fresh database on the session's influxd, dropped afterwards."""
    if not influxd.running:
        influxd.start()
    name = "t_" + uuid.uuid4().hex[:12]
    influxd.query(f'CREATE DATABASE "{name}"')
    yield name
    if not influxd.running:
        influxd.start()
    influxd.query(f'DROP DATABASE "{name}"')


@pytest.fixture(scope="session")
def victoria_metrics() -> Iterator[VictoriaMetrics]:
    server = start_or_fail(VictoriaMetrics)
    yield server
    server.close()
