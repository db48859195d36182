"""Fixtures for MQTT tests (the probes themselves are in tests/mqttwatch.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.mqttwatch import Watcher
from tests.services import Mosquitto


@pytest.fixture
def watch(mosquitto: Mosquitto) -> Iterator[Callable[[str], Watcher]]:
    """``watch(topic_filter)``: a Watcher on the test's broker, closed after the test."""
    watchers: list[Watcher] = []

    def start(topic_filter: str) -> Watcher:
        watcher = Watcher(mosquitto.host, mosquitto.port, topic_filter)
        watchers.append(watcher)
        return watcher

    yield start
    for watcher in watchers:
        watcher.close()
