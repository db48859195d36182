"""The project's table of Danish public holidays against the ``holidays`` package (decision 108)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import holidays
import pytest

from openbranch.edge.hours.danish_holidays import (
    FIRST_YEAR,
    LAST_GREAT_PRAYER_DAY,
    easter_sunday,
    public_holidays,
)

# Easter Sundays from published tables, including the extremes of the Gregorian computus
# (22 March and 25 April) and the years where the algorithm's corrections bite (1954, 1981).
EASTER = [
    date(1818, 3, 22),
    date(1886, 4, 25),
    date(1943, 4, 25),
    date(1954, 4, 18),
    date(1981, 4, 19),
    date(2000, 4, 23),
    date(2008, 3, 23),
    date(2011, 4, 24),
    date(2019, 4, 21),
    date(2026, 4, 5),
    date(2027, 3, 28),
    date(2038, 4, 25),
    date(2049, 4, 18),
    date(2285, 3, 22),
]


@pytest.mark.parametrize("easter", EASTER, ids=str)
def test_easter_sunday(easter: date) -> None:
    assert easter_sunday(easter.year) == easter


def test_the_table_is_the_package_from_1950_to_2100() -> None:
    package = holidays.country_holidays(
        "DK", years=range(1950, 2101), categories=("public",), language="en_US"
    )
    ours = {day: name for year in range(1950, 2101) for day, name in public_holidays(year).items()}
    assert len(ours) == 151 * 10 + (LAST_GREAT_PRAYER_DAY - 1950 + 1)
    missing = {day: name for day, name in package.items() if day not in ours}
    extra = {day: name for day, name in ours.items() if day not in package}
    renamed = {
        day: (name, package[day]) for day, name in ours.items() if package.get(day, name) != name
    }
    assert (missing, extra, renamed) == ({}, {}, {})


def test_great_prayer_day_ends_with_2023() -> None:
    assert public_holidays(2023)[date(2023, 5, 5)] == "Great Prayer Day"
    assert "Great Prayer Day" not in public_holidays(2024).values()
    assert date(2024, 4, 26) not in public_holidays(2024)  # the fourth Friday after Easter


def test_no_table_before_the_reform_as_in_the_package() -> None:
    assert public_holidays(FIRST_YEAR - 1) == {}
    assert not holidays.country_holidays("DK", years=FIRST_YEAR - 1, categories=("public",))
    assert date(FIRST_YEAR, 12, 25) in public_holidays(FIRST_YEAR)


def test_the_days_are_in_date_order() -> None:
    days = list(public_holidays(2026))
    assert days == sorted(days)
    assert days[0] == date(2026, 1, 1)
    assert days[-1] == date(2026, 12, 26)


def test_the_gateway_process_does_not_import_the_holidays_package() -> None:
    # what the gateway's process imports to run and to ask for a year's holidays
    code = (
        "import sys\n"
        "import openbranch.edge.cli, openbranch.edge.runtime.gateway\n"
        "from openbranch.edge.hours.calendar import holiday_of\n"
        "assert holiday_of(__import__('datetime').date(2026, 4, 3)) == ('public', 'Good Friday')\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] == 'holidays'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout
