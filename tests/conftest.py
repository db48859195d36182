"""Fixtures that start real servers (``tests/services.py``).

A server that cannot run here (its binary is missing, or it would not start) skips the test
with the reason on a developer's machine and fails it when ``CI=true``: CI must not go green
on tests that never ran. ``scripts/setup`` installs them.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import pytest

from tests.services import Influxd, Mosquitto, Service, ServiceUnavailable, VictoriaMetrics

S = TypeVar("S", bound=Service)


def in_ci() -> bool:
    """Whether this run is CI's (``CI=true``), where a missing server is a failure."""
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Fail the test in CI, skip it elsewhere: the one place that decides."""
    if in_ci():
        pytest.fail(f"required service unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"{reason} (outside CI this skips; with CI=true it fails)")


def start_or_fail(factory: Callable[[], S]) -> S:
    """Build and start a server, or skip/fail the test (see ``unavailable``)."""
    reason = ""
    with warnings.catch_warnings():
        # edge/devservers.py makes the temporary directory before it looks for the binary, so
        # a missing binary leaves a half-built service whose directory is removed, with a
        # ResourceWarning, when the exception is freed at the end of this block (an error
        # under filterwarnings=error). Pinned by an xfail in tests/test_services.py.
        warnings.filterwarnings("ignore", "Implicitly cleaning up", ResourceWarning)
        try:
            service = factory()
        except ServiceUnavailable as exc:
            reason = str(exc)
    if reason:
        unavailable(reason)
    try:
        service.start()
    except ServiceUnavailable as exc:
        service.close()
        unavailable(str(exc))
    except BaseException:
        service.close()
        raise
    return service


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A private Mosquitto for one test (anonymous access, no persistence)."""
    broker = start_or_fail(Mosquitto)
    yield broker
    broker.close()


@pytest.fixture(scope="session")
def influxd_session() -> Iterator[Influxd]:
    """The one private influxd of the session (tests use ``influxd``)."""
    server = start_or_fail(Influxd)
    yield server
    server.close()


@pytest.fixture
def influxd(influxd_session: Influxd) -> Influxd:
    """The session's influxd, running: a test that stopped it does not leave it down.

    Use ``influx_db`` for a database of the test's own.
    """
    influxd_session.start()
    return influxd_session


@pytest.fixture
def influx_db(influxd: Influxd) -> Iterator[str]:
    """A fresh database on the session's influxd, dropped afterwards (restarted if stopped)."""
    name = "t_" + uuid.uuid4().hex[:12]
    influxd.query(f'CREATE DATABASE "{name}"')
    yield name
    influxd.start()
    influxd.query(f'DROP DATABASE "{name}"')


@pytest.fixture(scope="session")
def victoria_metrics() -> Iterator[VictoriaMetrics]:
    """The session's private VictoriaMetrics (select a test's series by a unique name)."""
    server = start_or_fail(VictoriaMetrics)
    yield server
    server.close()
