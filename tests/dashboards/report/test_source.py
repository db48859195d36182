"""The local store's line protocol, read back exactly as the gateway wrote it (``Reading``)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from openbranch.dashboards.report.source import SourceError, StoreSource, parse_fields
from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading
from openbranch.edge.telemetry.outbox import Outbox

T = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_fields_with_quotes_commas_spaces_ints_and_bools() -> None:
    text = r'message="a, b \"c\" d\\",count=5i,ok=true,no=F,x=1.5e-3'
    assert parse_fields(text) == {
        "message": 'a, b "c" d\\',
        "count": Decimal(5),
        "ok": True,
        "no": False,
        "x": Decimal("0.0015"),
    }


def test_escaped_tags_and_odd_values_round_trip(tmp_path: Path) -> None:
    lines = [
        Reading(
            branch="a b,c=d",  # every character line protocol escapes in a tag
            device="m 1",
            measurement=schema.ENERGY_HOURLY,
            fields={
                schema.HOURLY_CONSUMPTION.key: 0.1 + 0.2,  # 0.30000000000000004, kept exactly
                schema.HOURLY_QUALITY.key: schema.HOURLY_QUALITY.choices[1],
                schema.HOURLY_COVERAGE.key: 0.25,
            },
            tags={schema.Tag.CARRIER.value: schema.Carrier.WATER.value},
            time=T,
        ).to_line()
    ]
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.append_lines(lines)
    with StoreSource(tmp_path / "o.db") as source:
        (row,) = source.hours(0, 2**62, None)
        assert (row.branch, row.device, row.carrier) == (
            "a b,c=d",
            "m 1",
            schema.Carrier.WATER.value,
        )
        assert row.consumption == Decimal("0.30000000000000004")
        assert row.quality == schema.HOURLY_QUALITY.choices[1]
        assert row.coverage == Decimal("0.25")
        assert list(source.hours(0, 2**62, ["other"])) == []


def test_missing_store_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such local store"):
        StoreSource(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()
