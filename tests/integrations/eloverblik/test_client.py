"""The Eloverblik client against a stand-in of the customer API (``standin.py``: Eloverblik
cannot run here), and the time series reader on the documented shape."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from openbranch.edge.core.yamlsource import ConfigError
from openbranch.integrations.eloverblik import (
    EloverblikClient,
    EloverblikUnavailable,
    RefreshTokenRejected,
    TimeSeriesError,
    hour_values,
    load_eloverblik,
)
from tests.integrations.eloverblik.standin import StandIn

MP = "571313174100000017"
ROOT = Path(__file__).resolve().parents[3]
SPRING = date(2026, 3, 29)  # 23 hours in Copenhagen


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.close()


def _spring_day() -> list[tuple[str, str]]:
    values = [("1.5", "A04")] * 23
    values[0] = ("0.25", "A03")  # estimated by the grid company
    values[5] = ("0", "A02")  # not available: no value
    return values


def test_a_spring_forward_day_has_23_hours_from_local_midnight(standin: StandIn) -> None:
    standin.publish(MP, SPRING, _spring_day())
    client = EloverblikClient(refresh_token="refresh-ok", url=standin.url)
    got = client.time_series([MP], SPRING, SPRING)
    assert len(got) == 22  # 23 hours, one not available
    assert got[0].start == datetime(2026, 3, 28, 23, tzinfo=UTC)  # 00:00 CET
    assert (got[0].kwh, got[0].quality) == (Decimal("0.25"), "estimated")
    assert got[-1].start == datetime(2026, 3, 29, 21, tzinfo=UTC)  # 23:00 CEST
    assert {v.start.hour for v in got}.isdisjoint({4})  # position 6 = 04:00Z, left out
    assert sum(v.kwh for v in got) == Decimal("0.25") + 21 * Decimal("1.5")


def test_a_late_day_is_absent_until_published(standin: StandIn) -> None:
    day1, day2 = date(2026, 3, 27), date(2026, 3, 28)
    standin.publish(MP, day1, [("1", "A04")] * 24)
    standin.publish(MP, day2, [("2", "A04")] * 24)
    standin.hold_back(MP, day2)
    client = EloverblikClient(refresh_token="refresh-ok", url=standin.url)
    assert {v.start.date() for v in client.time_series([MP], day1, day2)} == {
        date(2026, 3, 26),  # 27 March 00:00 CET is 26 March 23:00Z
        date(2026, 3, 27),
    }
    assert len(client.time_series([MP], day1, day2)) == 24
    standin.publish(MP, day2, [("2", "A04")] * 24)
    assert sum(v.kwh for v in client.time_series([MP], day1, day2)) == 24 + 48


def test_an_expired_access_token_is_renewed_once_and_the_call_repeated(
    standin: StandIn,
) -> None:
    standin.publish(MP, SPRING, _spring_day())
    client = EloverblikClient(refresh_token="refresh-ok", url=standin.url)
    client.time_series([MP], SPRING, SPRING)
    standin.expire_access()
    assert len(client.time_series([MP], SPRING, SPRING)) == 22
    assert client.token_requests == 2
    statuses = [(m, s) for m, _, s in standin.state.log]
    assert statuses == [("GET", 200), ("POST", 200), ("POST", 401), ("GET", 200), ("POST", 200)]


def test_many_metering_points_go_ten_a_request(standin: StandIn) -> None:
    points = [f"5713131741000000{n:02d}" for n in range(12)]
    for mp in points:
        standin.publish(mp, SPRING, [("1", "A04")] * 23)
    client = EloverblikClient(refresh_token="refresh-ok", url=standin.url)
    got = client.time_series(points, SPRING, SPRING)
    assert {v.metering_point for v in got} == set(points) and len(got) == 12 * 23
    assert [m for m, _, _ in standin.state.log] == ["GET", "POST", "POST"]


def test_a_refused_refresh_token_is_a_clear_error(standin: StandIn) -> None:
    client = EloverblikClient(refresh_token="refresh-expired", url=standin.url)
    with pytest.raises(RefreshTokenRejected) as caught:
        client.time_series([MP], SPRING, SPRING)
    assert "refused the refresh token (401)" in str(caught.value)
    assert "create a new one on eloverblik.dk" in str(caught.value)


def test_a_failed_result_names_the_metering_point_and_the_hubs_code(standin: StandIn) -> None:
    standin.state.failing[MP] = (20000, "NoMeteringPointsProvided")
    client = EloverblikClient(refresh_token="refresh-ok", url=standin.url)
    with pytest.raises(TimeSeriesError, match=f"{MP}.*20000 NoMeteringPointsProvided"):
        client.time_series([MP], SPRING, SPRING)


def test_an_unreachable_hub_is_unavailable() -> None:
    client = EloverblikClient(refresh_token="refresh-ok", url="http://127.0.0.1:9/customerapi")
    with pytest.raises(EloverblikUnavailable, match=r"127\.0\.0\.1:9"):
        client.time_series([MP], SPRING, SPRING)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resolution": "P1D"}, "resolution 'P1D'"),
        (
            {
                "Point": [
                    {"position": "25", "out_Quantity.quantity": "1", "out_Quantity.quality": "A04"}
                ]
            },
            "position 25 is outside",
        ),
        (
            {
                "Point": [
                    {"position": "1", "out_Quantity.quantity": "x", "out_Quantity.quality": "A04"}
                ]
            },
            "Point[0]: no quantity",
        ),
        (
            {
                "Point": [
                    {"position": "1", "out_Quantity.quantity": "1", "out_Quantity.quality": "Z9"}
                ]
            },
            "unknown quality 'Z9'",
        ),
        (
            {"timeInterval": {"start": "yesterday", "end": "2026-03-29T23:00:00Z"}},
            "timeInterval.start: 'yesterday' is not a time",
        ),
    ],
)
def test_answers_not_of_the_shape_say_where(change: dict[str, object], message: str) -> None:
    period: dict[str, object] = {
        "resolution": "PT1H",
        "timeInterval": {"start": "2026-03-28T23:00:00Z", "end": "2026-03-29T23:00:00Z"},
        "Point": [],
    }
    period.update(change)
    answer = {
        "result": [
            {
                "success": True,
                "id": MP,
                "MyEnergyData_MarketDocument": {
                    "TimeSeries": [{"mRID": MP, "measurement_Unit.name": "KWH", "Period": [period]}]
                },
            }
        ]
    }
    with pytest.raises(TimeSeriesError, match=r"result\[0\]\.TimeSeries\[0\]\.Period\[0\]") as e:
        hour_values(answer)
    assert message in str(e.value)


def test_quarter_hours_sum_into_their_hour() -> None:
    points = [
        {"position": str(i + 1), "out_Quantity.quantity": q, "out_Quantity.quality": quality}
        for i, (q, quality) in enumerate(
            [("0.1", "A04"), ("0.2", "A04"), ("0.3", "A03"), ("0.4", "A04"), ("1", "A04")]
        )
    ]
    answer = {
        "result": [
            {
                "success": True,
                "id": MP,
                "MyEnergyData_MarketDocument": {
                    "TimeSeries": [
                        {
                            "mRID": MP,
                            "Period": [
                                {
                                    "resolution": "PT15M",
                                    "timeInterval": {
                                        "start": "2026-03-28T23:00:00Z",
                                        "end": "2026-03-29T00:15:00Z",
                                    },
                                    "Point": points,
                                }
                            ],
                        }
                    ]
                },
            }
        ]
    }
    got = hour_values(answer)
    assert [(v.start.hour, v.kwh, v.quality) for v in got] == [
        (23, Decimal("1.0"), "estimated"),
        (0, Decimal("1"), "measured"),
    ]


def test_sample_config_loads_and_bad_points_are_located(tmp_path: Path) -> None:
    sample = load_eloverblik(ROOT / "integrations" / "eloverblik" / "sample.yaml")
    assert [p.branch for p in sample.metering_points] == ["dokk1", "hasle"]
    assert sample.eloverblik.refresh_token.file is not None
    bad = tmp_path / "e.yaml"
    bad.write_text(
        "eloverblik:\n  refresh_token: {env: TOKEN}\nmetering_points:\n"
        "  - {id: '57131317', branch: aby, device: main}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_eloverblik(bad)
    assert "e.yaml:4" in str(caught.value) and "metering_points[0].id" in str(caught.value)
    bad.write_text("eloverblik:\n  refresh_token: abc\nmetering_points: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="never written in the config"):
        load_eloverblik(bad)
