"""The data hub's time series answer, read without I/O: ``MyEnergyData_MarketDocument`` ->
``TimeSeries`` -> ``Period`` -> ``Point`` into one value per hour.

The shape (Eloverblik's customer and third-party APIs, ``meterdata/gettimeseries``)::

    {"result": [
      {"success": true, "errorCode": 10000, "errorText": "NoError", "id": "<metering point>",
       "MyEnergyData_MarketDocument": {
         "TimeSeries": [{
           "mRID": "<metering point>", "measurement_Unit.name": "KWH",
           "Period": [{
             "resolution": "PT1H",
             "timeInterval": {"start": "2026-03-28T23:00:00Z", "end": "2026-03-29T22:00:00Z"},
             "Point": [{"position": "1", "out_Quantity.quantity": "1.25",
                        "out_Quantity.quality": "A04"}, ...]}]}]}}]}

A period starts at local midnight in UTC; point ``n`` is the hour starting ``n - 1`` hours
after it, so a spring-forward day has 23 points and a fall-back day 25, with no local time to
misread. Quantities are kept as the exact Decimal of their text.

Quality codes (ENTSO-E): A04 as provided (measured), A03 estimated, A01 adjusted, A05
incomplete; A02 (not available) has no value and is left out.

Exceptions: ``TimeSeriesError`` names the metering point, the period and the point that is not
of this shape; a result the data hub marks as failed (``success`` false) is one too, with its
``errorCode`` and ``errorText``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["QUALITY", "HourValue", "TimeSeriesError", "hour_values"]

#: Data hub quality code -> the ``utility_hourly`` quality (A02, not available, has no value).
QUALITY: Mapping[str, str] = {
    "A04": "measured",
    "A03": "estimated",
    "A01": "adjusted",
    "A05": "incomplete",
}
_NOT_AVAILABLE = "A02"
_STEPS = {"PT1H": timedelta(hours=1), "PT15M": timedelta(minutes=15)}


class TimeSeriesError(ValueError):
    """An answer that is not of the documented shape, or a result the data hub marked failed."""


@dataclass(frozen=True, slots=True)
class HourValue:
    """One metering point's consumption in one UTC hour (``start`` aware, UTC)."""

    metering_point: str
    start: datetime
    kwh: Decimal
    quality: str  # a value of QUALITY


def _time(text: object, where: str) -> datetime:
    if not isinstance(text, str):
        raise TimeSeriesError(f"{where}: expected a time like 2026-03-28T23:00:00Z, got {text!r}")
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TimeSeriesError(f"{where}: {text!r} is not a time") from None
    if when.tzinfo is None:
        raise TimeSeriesError(f"{where}: {text!r} has no UTC offset")
    return when.astimezone(UTC)


def _list(node: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = node.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TimeSeriesError(f"{where}: {key} is not a list")
    return value


def _points(mp: str, period: Mapping[str, Any], where: str) -> Iterator[HourValue]:
    resolution = period.get("resolution")
    step = _STEPS.get(str(resolution))
    if step is None:
        raise TimeSeriesError(f"{where}: resolution {resolution!r} (expected PT1H)")
    interval = period.get("timeInterval") or {}
    start = _time(interval.get("start"), f"{where}.timeInterval.start")
    end = _time(interval.get("end"), f"{where}.timeInterval.end")
    for j, point in enumerate(_list(period, "Point", where)):
        here = f"{where}.Point[{j}]"
        try:
            position = int(point["position"])
        except (KeyError, TypeError, ValueError):
            raise TimeSeriesError(f"{here}: no position") from None
        at = start + (position - 1) * step
        if position < 1 or at >= end:
            raise TimeSeriesError(f"{here}: position {position} is outside {start}..{end}")
        quality = str(point.get("out_Quantity.quality", ""))
        if quality == _NOT_AVAILABLE:
            continue
        if quality not in QUALITY:
            raise TimeSeriesError(f"{here}: unknown quality {quality!r}")
        try:
            kwh = Decimal(str(point["out_Quantity.quantity"]))
        except (KeyError, InvalidOperation):
            raise TimeSeriesError(f"{here}: no quantity") from None
        yield HourValue(mp, at, kwh, QUALITY[quality])


def hour_values(answer: Mapping[str, Any]) -> list[HourValue]:
    """Every hour of a ``gettimeseries`` answer, per metering point, in the answer's order.

    Quarter-hour periods (PT15M) are summed into their hours, the worst quality winning."""
    out: list[HourValue] = []
    for i, result in enumerate(_list(answer, "result", "answer")):
        where = f"result[{i}]"
        mp = str(result.get("id") or "")
        if result.get("success") is False:
            raise TimeSeriesError(
                f"{where} (metering point {mp or '?'}): the data hub answered error"
                f" {result.get('errorCode')} {result.get('errorText') or ''}".rstrip()
            )
        document = result.get("MyEnergyData_MarketDocument") or {}
        for k, series in enumerate(_list(document, "TimeSeries", where)):
            here = f"{where}.TimeSeries[{k}]"
            point_id = str(series.get("mRID") or mp)
            unit = str(series.get("measurement_Unit.name", "KWH")).upper()
            if unit != "KWH":
                raise TimeSeriesError(f"{here}: unit {unit!r} (expected KWH)")
            for n, period in enumerate(_list(series, "Period", here)):
                out.extend(_points(point_id, period, f"{here}.Period[{n}]"))
    return _to_hours(out)


_RANK = {q: i for i, q in enumerate(("measured", "adjusted", "estimated", "incomplete"))}


def _to_hours(values: list[HourValue]) -> list[HourValue]:
    """Quarter hours summed into their hours (an hourly answer passes through unchanged)."""
    if all(v.start.minute == 0 for v in values):
        return values
    hours: dict[tuple[str, datetime], HourValue] = {}
    for v in values:
        key = (v.metering_point, v.start.replace(minute=0))
        got = hours.get(key)
        if got is None:
            hours[key] = HourValue(v.metering_point, key[1], v.kwh, v.quality)
        else:
            worst = max(got.quality, v.quality, key=_RANK.__getitem__)
            hours[key] = HourValue(v.metering_point, key[1], got.kwh + v.kwh, worst)
    return list(hours.values())
