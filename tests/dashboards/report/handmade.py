"""Hand-made data for the report tests: two branches in two price areas through March 2026
(the month the clocks spring forward: 743 hours), every figure worked out in the tests.

aby (DK1, Kredsløb, 500 m²):
  main  electricity  2.5 kWh in every hour of March (local): 743 h, 1857.5 kWh; two gaps the
                     gateway bridged: 4 + 2 hours flagged interpolated (15 kWh).
                     Registers: 1000, 1100, 50 (reset: below 90 % of 1100), 60, 70, 65 (a dip:
                     65 >= 0.9 x 70, not a reset) -> 1 reset.
  heat  district     starts mid-month: 10 kWh in every hour from 16 March 00:00 local
        heating      (15 March 23:00Z) to the end: 383 h, 3830 kWh.
  door  entered      0, 100, 250, 20 (a counter reset: counts in full), 50 -> 300 visitors.
  Also: one hour just before the month (28 Feb 22:00Z = 23:00 local, February): not counted.
kbh (DK2, HOFOR, 1000 m²):
  el    electricity  4 kWh an hour, but the first hour is written twice, the second time 5 kWh
                     (the later point wins, as in InfluxDB), and three hours are missing
                     (no point at all): 740 h present, 739 x 4 + 5 = 2961 kWh.
                     Registers within one UTC day: 500, 900, 700 (below 90 % of 900: a reset,
                     though not the day's lowest), 720; the next day 730 -> 1 reset.
Baseline (March 2025, also 743 hours): aby main 2 kWh an hour -> 1486 kWh.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading

MARCH_START = datetime(2026, 2, 28, 23, tzinfo=UTC)  # 1 March 00:00 CET
MARCH_END = datetime(2026, 3, 31, 22, tzinfo=UTC)  # 1 April 00:00 CEST
MARCH_HOURS = 743
HEAT_START = datetime(2026, 3, 15, 23, tzinfo=UTC)  # 16 March 00:00 CET
GAP_HOURS = {100, 101, 102, 103, 400, 401}  # hour indexes of aby main flagged interpolated
KBH_MISSING = {300, 301, 302}
EL, DH = schema.Carrier.ELECTRICITY.value, schema.Carrier.DISTRICT_HEATING.value
MEASURED, INTERPOLATED = schema.HOURLY_QUALITY.choices[:2]


def hour(
    branch: str, device: str, carrier: str, start: datetime, kwh: float, *, quality: str = MEASURED
) -> str:
    return Reading(
        branch=branch,
        device=device,
        measurement=schema.ENERGY_HOURLY,
        fields={
            schema.HOURLY_CONSUMPTION.key: kwh,
            schema.HOURLY_QUALITY.key: quality,
            schema.HOURLY_COVERAGE.key: 0.0 if quality == INTERPOLATED else 1.0,
        },
        tags={schema.Tag.CARRIER.value: carrier},
        time=start,
    ).to_line()


def register(branch: str, device: str, carrier: str, when: datetime, value: float) -> str:
    return Reading(
        branch=branch,
        device=device,
        measurement=schema.ENERGY,
        fields={schema.ENERGY_REGISTER.key: value},
        tags={schema.Tag.CARRIER.value: carrier},
        time=when,
    ).to_line()


def entered(branch: str, device: str, when: datetime, value: int) -> str:
    return Reading(
        branch=branch,
        device=device,
        measurement=schema.OCCUPANCY,
        fields={schema.OCCUPANCY_ENTERED.key: value},
        time=when,
    ).to_line()


def march_lines() -> list[str]:
    """Every line of the data set, in time order (as a gateway's outbox holds them)."""
    timed: list[tuple[datetime, int, str]] = []
    seq = 0

    def add(when: datetime, line: str) -> None:
        nonlocal seq
        timed.append((when, seq, line))
        seq += 1

    h = timedelta(hours=1)
    before = MARCH_START - h
    add(before, hour("aby", "main", EL, before, 99.0))  # February: not in the report
    for i in range(MARCH_HOURS):
        t = MARCH_START + i * h
        add(
            t, hour("aby", "main", EL, t, 2.5, quality=INTERPOLATED if i in GAP_HOURS else MEASURED)
        )
        if t >= HEAT_START:
            add(t, hour("aby", "heat", DH, t, 10.0))
        if i not in KBH_MISSING:
            add(t, hour("kbh", "el", EL, t, 4.0))
        if i == 0:
            add(t, hour("kbh", "el", EL, t, 5.0))  # the same hour again: this one wins
    for i, value in enumerate((1000.0, 1100.0, 50.0, 60.0, 70.0, 65.0)):
        t = MARCH_START + timedelta(days=2 + i, minutes=7)
        add(t, register("aby", "main", EL, t, value))
    for i, value in enumerate((500.0, 900.0, 700.0, 720.0)):  # one UTC day: 900 -> 700 resets
        t = MARCH_START + timedelta(days=10, hours=1 + i)
        add(t, register("kbh", "el", EL, t, value))
    t = MARCH_START + timedelta(days=11, hours=1)
    add(t, register("kbh", "el", EL, t, 730.0))
    for i, count in enumerate((0, 100, 250, 20, 50)):
        t = MARCH_START + timedelta(days=3 + i, hours=10)
        add(t, entered("aby", "door", t, count))
    base = datetime(2025, 2, 28, 23, tzinfo=UTC)  # 1 March 2025 00:00 CET
    for i in range(743):  # March 2025: clocks spring forward on the 30th
        t = base + i * h
        add(t, hour("aby", "main", EL, t, 2.0))
    return [line for _, _, line in sorted(timed, key=lambda x: (x[0], x[1]))]


BRANCHES_YAML = """\
municipality: {id: test, name: Test, price_area: DK1, heat_supplier: Kredsløb}
branches:
  - {id: aby, name: Aby Bibliotek, floor_area_m2: 500}
  - {id: kbh, name: KBH Bibliotek, floor_area_m2: 1000, price_area: DK2, heat_supplier: HOFOR}
"""

FACTORS_YAML = """\
factors:
  - {carrier: electricity, area: DK1, year: 2026, value: 100, unit: g/kWh,
     method: location-based, source: test DK1, preliminary: false, verified: true}
  - {carrier: electricity, area: DK2, year: 2025, value: 50, unit: g/kWh,
     method: location-based, source: test DK2, preliminary: true}
  - {carrier: district_heating, supplier: Kredsløb, year: 2026, value: 40, unit: kg/MWh,
     method: supplier-declaration, source: test heat, preliminary: false, verified: true}
  - {carrier: district_heating, supplier: HOFOR, year: 2026, value: 0.06, unit: kg/kWh,
     method: supplier-declaration, source: test HOFOR, preliminary: false, verified: true}
"""

# Energinet's shape: semicolons, decimal commas, HourUTC and HourDK columns. DK1 200 g/kWh in
# the first 24 hours of March; DK2 20 g/kWh in the first 10.
HOURLY_CSV = (
    "HourUTC;HourDK;PriceArea;CO2Emission\n"
    + "".join(
        f"{(MARCH_START + timedelta(hours=i)):%Y-%m-%dT%H:%M:%S};x;DK1;200,0\n" for i in range(24)
    )
    + "".join(f"{(MARCH_START + timedelta(hours=i)):%Y-%m-%d %H:%M};x;DK2;20\n" for i in range(10))
)

# 5 °C every day of March: 17 - 5 = 12 degree days a day, 372 in the month.
DEGREE_DAYS_CSV = "date,mean_temp_c\n" + "".join(f"2026-03-{d:02d},5.0\n" for d in range(1, 32))


def write_inputs(folder: Path) -> dict[str, Path]:
    files = {
        "branches": folder / "branches.yaml",
        "factors": folder / "factors.yaml",
        "hourly": folder / "hourly.csv",
        "degree_days": folder / "dd.csv",
    }
    files["branches"].write_text(BRANCHES_YAML, encoding="utf-8")
    files["factors"].write_text(FACTORS_YAML, encoding="utf-8")
    files["hourly"].write_text(HOURLY_CSV, encoding="utf-8")
    files["degree_days"].write_text(DEGREE_DAYS_CSV, encoding="utf-8")
    return files
