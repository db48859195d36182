"""Energy accounting: every figure here is worked out by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from edge.energy import AccountState, EnergyAccount, local_day_totals
from edge.reading import Quality

CPH = ZoneInfo("Europe/Copenhagen")


def at(h: int, m: int = 0, day: int = 24, month: int = 11) -> datetime:
    return datetime(2026, month, day, h, m, tzinfo=UTC)


def account(**kw: object) -> EnergyAccount:
    return EnergyAccount(branch="b", device="meter", carrier="electricity", **kw)  # type: ignore[arg-type]


def hours(acc: EnergyAccount, stream: list[tuple[datetime, float]]) -> dict[datetime, tuple]:
    out = {}
    for t, reg in stream:
        for r in acc.observe(t, reg).hourly:
            out[r.time] = (r.fields["consumption"], r.fields["quality"], r.fields["coverage"])
    return out


def test_steady_readings_every_ten_minutes() -> None:
    # 09:00..12:00, +1 kWh every 10 minutes: 6 kWh per hour, measured, fully covered
    stream = [(at(9) + timedelta(minutes=10 * i), 100.0 + i) for i in range(19)]
    got = hours(account(), stream)
    assert got == {
        at(9): (pytest.approx(6.0), "measured", 1.0),
        at(10): (pytest.approx(6.0), "measured", 1.0),
        at(11): (pytest.approx(6.0), "measured", 1.0),
    }
    assert sum(c for c, _, _ in got.values()) == pytest.approx(118.0 - 100.0)


def test_interval_across_the_hour_is_split_by_time() -> None:
    # 09:55 -> 10:05 with 2 kWh: 1 kWh to 09:00 and 1 kWh to 10:00
    acc = account()
    acc.observe(at(9, 55), 50.0)
    first = acc.observe(at(10, 5), 52.0).hourly
    assert len(first) == 1
    assert first[0].time == at(9)
    assert first[0].fields["consumption"] == pytest.approx(1.0)
    assert first[0].fields["coverage"] == pytest.approx(5 / 60)  # only 09:55-10:00 seen
    (second,) = acc.observe(at(11), 52.0).hourly
    assert second.fields["consumption"] == pytest.approx(1.0)


def test_reset_counts_the_new_reading_in_full() -> None:
    acc = account()
    totals = [
        acc.observe(at(9, m), reg).total for m, reg in [(0, 1000), (10, 1010), (20, 5), (30, 8)]
    ]
    assert totals == [1000, 1010, 1015, 1018]  # 1010 + 5, then + 3


def test_small_dip_is_noise_flagged_and_not_consumption() -> None:
    acc = account()
    acc.observe(at(9, 0), 1000)
    dip = acc.observe(at(9, 10), 995)  # 99.5 % of 1000: noise
    assert (dip.total, dip.consumption, dip.quality) == (1000, 0.0, Quality.SUSPECT)
    up = acc.observe(at(9, 20), 1003)
    assert (up.total, up.consumption, up.quality) == (1003, 3, Quality.GOOD)  # not 8


def test_wrap_around_with_and_without_rollover() -> None:
    wrap = account(rollover=100_000)
    wrap.observe(at(9, 0), 99_990)
    w = wrap.observe(at(9, 10), 5)
    assert (w.consumption, w.total) == (15, 100_005)  # 10 to the top, 5 after the wrap
    reset = account()
    reset.observe(at(9, 0), 99_990)
    r = reset.observe(at(9, 10), 5)
    assert (r.consumption, r.total) == (5, 99_995)  # without rollover it is a reset


def test_gap_across_hours_is_spread_flagged_and_conserved() -> None:
    # +1 kWh every 10 min up to 10:50 (100), then nothing until 14:10 (120): 20 kWh over
    # 200 minutes = 0.1 kWh/min, then +1 kWh every 10 min again until 15:00 (125)
    before = [(at(10, 10 * i), 95.0 + i) for i in range(6)]
    after = [(at(14, 10 * i), 119.0 + i) for i in range(1, 6)] + [(at(15, 0), 125.0)]
    got = hours(account(), [*before, *after])
    # 10:00: 5 kWh measured (10:00-10:50) + 1 kWh of the gap (10:50-11:00)
    assert got[at(10)] == (pytest.approx(6.0), "interpolated", pytest.approx(50 / 60))
    for h in (11, 12, 13):
        assert got[at(h)] == (pytest.approx(6.0), "interpolated", 0.0)
    # 14:00: 10 min of the gap (1 kWh) and 50 min measured (5 kWh)
    assert got[at(14)] == (pytest.approx(6.0), "interpolated", pytest.approx(50 / 60))
    assert sum(c for c, _, _ in got.values()) == pytest.approx(125.0 - 95.0)


def test_dst_days_have_23_and_25_hours_and_local_totals() -> None:
    # 1 kWh per UTC hour around both changes of 2026 in Copenhagen
    for day, month, n_hours in ((29, 3, 23), (25, 10, 25)):
        local_midnight = datetime(2026, month, day, tzinfo=CPH)
        start = (local_midnight - timedelta(hours=2)).astimezone(UTC)
        acc = account()
        stream = [(start + timedelta(hours=i), float(i)) for i in range(30)]
        got = hours(acc, stream)
        totals = local_day_totals(((t, c) for t, (c, _, _) in got.items()), CPH)
        assert totals[local_midnight.date()] == pytest.approx(n_hours)


@pytest.mark.parametrize("split", range(1, 12))
def test_resume_from_persisted_state_is_exact(split: int) -> None:
    stream = [
        (at(9) + timedelta(minutes=17 * i), 10.0 + 1.3 * i - (6 if i == 7 else 0))
        for i in range(12)
    ]
    whole = account()
    expected = [
        (o.total, o.quality, [r.to_line() for r in o.hourly])
        for o in (whole.observe(t, v) for t, v in stream)
    ]
    first = account()
    got = [first.observe(t, v) for t, v in stream[:split]]
    resumed = account(state=AccountState.from_json(first.state().to_json()))
    got += [resumed.observe(t, v) for t, v in stream[split:]]
    assert [(o.total, o.quality, [r.to_line() for r in o.hourly]) for o in got] == expected


def test_bad_readings_raise_naming_the_device() -> None:
    acc = account()
    acc.observe(at(9), 1.0)
    with pytest.raises(ValueError, match=r"meter: reading at .* is not after"):
        acc.observe(at(9), 2.0)
    with pytest.raises(ValueError, match="meter: register nan"):
        acc.observe(at(10), float("nan"))
    with pytest.raises(ValueError, match="meter: register -1"):
        acc.observe(at(10), -1.0)


def test_hourly_readings_carry_the_carrier_tag_and_hour_start() -> None:
    acc = account()
    acc.observe(at(9, 30), 1.0)
    (hour,) = acc.observe(at(10, 30), 3.0).hourly
    assert hour.to_line().startswith("energy_hourly,branch=b,carrier=electricity,device=meter ")
    assert hour.time == at(9)


def test_ledger_adds_totals_and_hours_and_resumes_from_saved_state() -> None:
    from edge import schema
    from edge.energy import EnergyLedger
    from edge.reading import Reading

    saved: dict[str, str] = {}

    def meter(t: datetime, register: float) -> Reading:
        return Reading(
            branch="b",
            device="m",
            measurement=schema.ENERGY,
            fields={"register": register, "power_w": 5.0},
            tags={"carrier": "electricity"},
            time=t,
        )

    ledger = EnergyLedger(branch="b", load=saved.get)
    out, state = ledger.process([meter(at(9, 50), 100.0), meter(at(10, 0), 101.0)])
    saved.update(state)
    assert [r.fields.get("total") for r in out if r.measurement is schema.ENERGY] == [100.0, 101.0]
    hourly = [r for r in out if r.measurement is schema.ENERGY_HOURLY]
    assert [(r.time, r.fields["consumption"]) for r in hourly] == [(at(9), 1.0)]
    restarted = EnergyLedger(branch="b", load=saved.get)  # after a restart
    out, _ = restarted.process([meter(at(10, 10), 103.0), meter(at(11, 0), 104.0)])
    assert [r.fields.get("total") for r in out if r.measurement is schema.ENERGY] == [103.0, 104.0]
    hourly = [r for r in out if r.measurement is schema.ENERGY_HOURLY]
    assert [(r.time, r.fields["consumption"]) for r in hourly] == [(at(10), 3.0)]
