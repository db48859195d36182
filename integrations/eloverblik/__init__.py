"""Eloverblik (Energinet's DataHub): the grid company's own hourly readings of a branch's
electricity meter, for reconciliation with the gateway's meter (see README.md).

Not a device driver: the data hub publishes a day's hours a day or more later, so the import
runs centrally (``openbranch report utility``), not in a branch's polling loop, and registers no
transport.
"""

from __future__ import annotations

from openbranch.integrations.eloverblik.client import (
    DEFAULT_URL,
    EloverblikClient,
    EloverblikError,
    EloverblikUnavailable,
    RefreshTokenRejected,
)
from openbranch.integrations.eloverblik.config import (
    EloverblikFile,
    EloverblikSettings,
    MeteringPoint,
    load_eloverblik,
)
from openbranch.integrations.eloverblik.timeseries import (
    QUALITY,
    HourValue,
    TimeSeriesError,
    hour_values,
)

__all__ = [
    "DEFAULT_URL",
    "QUALITY",
    "EloverblikClient",
    "EloverblikError",
    "EloverblikFile",
    "EloverblikSettings",
    "EloverblikUnavailable",
    "HourValue",
    "MeteringPoint",
    "RefreshTokenRejected",
    "TimeSeriesError",
    "hour_values",
    "load_eloverblik",
]
