"""Danish public holidays, computed: the Easter-based days and three fixed ones (decision 108).

The table is the law as it stands since Helligdagsreformen of 1770 (in force from 1771):

- fixed: New Year's Day (1 January), Christmas Day (25 December), Second Day of Christmas
  (26 December);
- from Easter Sunday (the Gregorian computus, ``easter_sunday``): Maundy Thursday (-3 days),
  Good Friday (-2), Easter Sunday, Easter Monday (+1), Great Prayer Day (+26, the fourth
  Friday after Easter; abolished by Act no. 214 of 6 March 2023 from 2024), Ascension Day
  (+39), Pentecost (+49), Pentecost Monday (+50).

The names are the English ones the calendar shows in its reasons ("Good Friday: closed"), the
same as the ``holidays`` package's ``en_US`` names for ``DK``; a test compares this table
with the package date by date and name by name from 1950 to 2100. The optional days (1 May,
5 June, 24 and 31 December) are not here: they have their own policy (``OPTIONAL_DAYS`` in
``edge.core.schedule``). Pure: no clock, no I/O.

Before 1771 the table has no holidays (the reform is where it, and the package, begin).
"""

from __future__ import annotations

from datetime import date, timedelta

__all__ = ["FIRST_YEAR", "LAST_GREAT_PRAYER_DAY", "easter_sunday", "public_holidays"]

FIRST_YEAR = 1771
"""The first year of the table: the holidays as counted since Helligdagsreformen of 1770."""

LAST_GREAT_PRAYER_DAY = 2023
"""Great Prayer Day (Store bededag) is a public holiday up to and including this year."""

_GREAT_PRAYER_DAY = "Great Prayer Day"

# (month, day, name)
_FIXED: tuple[tuple[int, int, str], ...] = (
    (1, 1, "New Year's Day"),
    (12, 25, "Christmas Day"),
    (12, 26, "Second Day of Christmas"),
)

# (days after Easter Sunday, name)
_FROM_EASTER: tuple[tuple[int, str], ...] = (
    (-3, "Maundy Thursday"),
    (-2, "Good Friday"),
    (0, "Easter Sunday"),
    (1, "Easter Monday"),
    (26, _GREAT_PRAYER_DAY),
    (39, "Ascension Day"),
    (49, "Pentecost"),
    (50, "Pentecost Monday"),
)


def easter_sunday(year: int) -> date:
    """Easter Sunday of ``year`` by the anonymous Gregorian algorithm (Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday) // 451
    month, day = divmod(h + weekday - 7 * m + 114, 31)
    return date(year, month, day + 1)


def public_holidays(year: int) -> dict[date, str]:
    """The Danish public holidays of ``year``, date -> English name, in date order."""
    if year < FIRST_YEAR:
        return {}
    easter = easter_sunday(year)
    days = {date(year, month, day): name for month, day, name in _FIXED}
    for offset, name in _FROM_EASTER:
        if name != _GREAT_PRAYER_DAY or year <= LAST_GREAT_PRAYER_DAY:
            days[easter + timedelta(days=offset)] = name
    return dict(sorted(days.items()))
