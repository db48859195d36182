"""Energy accounting: every figure here is worked out by hand, in a comment or as arithmetic."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Quality, Reading, to_ns
from openbranch.edge.telemetry.energy import (
    DEFAULT_MAX_GAP,
    AccountState,
    CounterEvent,
    EnergyAccount,
    EnergyLedger,
    HourBucket,
    HourQuality,
    Observation,
    classify,
    energy_rollovers,
    local_day_totals,
    split_by_hour,
)

CPH = ZoneInfo("Europe/Copenhagen")
CONSUMPTION = schema.HOURLY_CONSUMPTION.key
QUALITY = schema.HOURLY_QUALITY.key
COVERAGE = schema.HOURLY_COVERAGE.key
MEASURED, INTERPOLATED = HourQuality.MEASURED.value, HourQuality.INTERPOLATED.value
TIGHT = 1e-12  # relative tolerance: float rounding only

Hour = tuple[float, str, float]  # (consumption, quality, coverage)


def at(h: int, m: int = 0, s: float = 0, *, day: int = 24, month: int = 11) -> datetime:
    """A UTC time on 2026-11-24 unless told otherwise."""
    return datetime(2026, month, day, h, m, tzinfo=UTC) + timedelta(seconds=s)


def account(
    *, rollover: float | None = None, max_gap: timedelta = timedelta(minutes=15)
) -> EnergyAccount:
    return EnergyAccount(
        branch="b", device="meter", carrier="electricity", rollover=rollover, max_gap=max_gap
    )


def hour_of(r: Reading) -> Hour:
    c, q, cov = r.fields[CONSUMPTION], r.fields[QUALITY], r.fields[COVERAGE]
    assert isinstance(c, float) and isinstance(q, str) and isinstance(cov, float)
    return (c, q, cov)


def feed(acc: EnergyAccount, stream: list[tuple[datetime, float]]) -> list[Observation]:
    return [acc.observe(t, reg) for t, reg in stream]


def hours(observations: list[Observation]) -> dict[datetime, Hour]:
    """Every emitted hour, checking that none is emitted twice."""
    out: dict[datetime, Hour] = {}
    for o in observations:
        for r in o.hourly:
            assert r.time not in out, f"{r.time} emitted twice"
            out[r.time] = hour_of(r)
    return out


def approx(value: float) -> object:
    return pytest.approx(value, rel=TIGHT, abs=1e-12)


# -- the counter ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "register", "rollover", "event"),
    [
        (1000.0, 1000.0, None, CounterEvent.INCREASE),  # unchanged: an increase of 0
        (1000.0, 1003.0, None, CounterEvent.INCREASE),
        (1000.0, 995.0, None, CounterEvent.DIP),  # 99.5 %
        (1000.0, 900.0, None, CounterEvent.DIP),  # exactly 90 %: still noise
        (1000.0, 899.9, None, CounterEvent.RESET),  # 89.99 %
        (1010.0, 5.0, None, CounterEvent.RESET),
        (99_990.0, 5.0, None, CounterEvent.RESET),  # no rollover: a big drop is a reset
        (99_990.0, 5.0, 100_000.0, CounterEvent.WRAP),  # top tenth -> bottom tenth
        (90_000.0, 9_999.0, 100_000.0, CounterEvent.WRAP),  # both band edges: 90 % and < 10 %
        (89_999.0, 5.0, 100_000.0, CounterEvent.RESET),  # not from the top tenth
        (99_990.0, 10_000.0, 100_000.0, CounterEvent.RESET),  # not into the bottom tenth
        (99_990.0, 99_000.0, 100_000.0, CounterEvent.DIP),  # 99.01 %: noise, rollover or not
    ],
)
def test_classify(
    reference: float, register: float, rollover: float | None, event: CounterEvent
) -> None:
    assert classify(reference, register, rollover=rollover) is event


def test_reset_counts_the_new_reading_in_full() -> None:
    acc = account()
    got = feed(
        acc,
        [
            *[(at(9, 0), 1000), (at(9, 10), 1010), (at(9, 20), 5), (at(9, 30), 8)],
            *[(at(9, 40), 8), (at(9, 50), 8), (at(10), 8)],
        ],
    )
    assert [o.total for o in got] == [1000, 1010, 1015, 1018, 1018, 1018, 1018]  # 1010 + 5, + 3
    assert [o.consumption for o in got[:4]] == [0, 10, 5, 3]
    assert [o.event for o in got[:4]] == [
        CounterEvent.FIRST,
        CounterEvent.INCREASE,
        CounterEvent.RESET,
        CounterEvent.INCREASE,
    ]
    assert all(o.quality is Quality.GOOD for o in got)
    assert all(isinstance(o.total, float) and isinstance(o.register, float) for o in got)
    # the 09:00 hour: 10 + 5 + 3 = 18 kWh, all in 10-minute intervals
    assert hours(got) == {at(9): (approx(18.0), MEASURED, 1.0)}
    assert acc.state() == AccountState(
        last_ns=to_ns(at(10)), last_register=8.0, reference=8.0, offset=1010.0
    )


def test_small_dip_is_noise_flagged_and_not_consumption() -> None:
    acc = account()
    acc.observe(at(9, 0), 1000)
    dip = acc.observe(at(9, 10), 995)  # 99.5 % of 1000: noise
    assert (dip.total, dip.consumption, dip.quality, dip.event) == (
        1000,
        0.0,
        Quality.SUSPECT,
        CounterEvent.DIP,
    )
    assert (acc.state().last_register, acc.state().reference) == (995, 1000)
    still = acc.observe(at(9, 20), 998)  # up from 995, still below the old maximum 1000
    assert (still.total, still.consumption, still.quality) == (1000, 0.0, Quality.SUSPECT)
    up = acc.observe(at(9, 30), 1003)
    assert (up.total, up.consumption, up.quality) == (1003, 3, Quality.GOOD)  # not 8, not 5
    rest = feed(acc, [(at(9, 40), 1004), (at(9, 50), 1005), (at(10), 1006)])
    # the 09:00 hour: 0 + 0 + 3 + 1 + 1 + 1 = 6 kWh = 1006 - 1000
    assert hours(rest) == {at(9): (approx(6.0), MEASURED, 1.0)}


def test_wrap_around_with_and_without_rollover() -> None:
    wrap = account(rollover=100_000)
    wrap.observe(at(9, 0), 99_990)
    w = wrap.observe(at(9, 10), 5)
    assert (w.consumption, w.total, w.event) == (15, 100_005, CounterEvent.WRAP)  # 10 + 5
    after = wrap.observe(at(9, 20), 7)
    assert (after.consumption, after.total) == (2, 100_007)
    reset = account()
    reset.observe(at(9, 0), 99_990)
    r = reset.observe(at(9, 10), 5)
    assert (r.consumption, r.total, r.event) == (5, 99_995, CounterEvent.RESET)  # 99 990 + 5


def test_wrap_of_a_scaled_uint32_register() -> None:
    rollover = 2**32 * 0.01  # 42 949 672.96 kWh: a uint32 of 0.01 kWh
    acc = account(rollover=rollover)
    acc.observe(at(9, 0), 42_949_672.00)
    w = acc.observe(at(9, 10), 0.50)
    assert w.event is CounterEvent.WRAP
    assert w.consumption == pytest.approx(0.96 + 0.50, abs=1e-6)  # 0.96 to the top, then 0.50
    assert w.total == pytest.approx(42_949_672.00 + 1.46, abs=1e-6)


# -- the hours --------------------------------------------------------------------------------


def test_steady_ten_minute_readings_over_three_hours() -> None:
    # 09:00..12:00 every 10 minutes: +1 kWh per reading in the 09:00 hour, +2 in the 10:00
    # hour, +0.5 in the 11:00 hour: 6, 12 and 3 kWh; registers 100 -> 106 -> 118 -> 121
    steps = [1.0] * 6 + [2.0] * 6 + [0.5] * 6
    registers = [100.0 + sum(steps[:i]) for i in range(19)]
    stream = [(at(9) + timedelta(minutes=10 * i), reg) for i, reg in enumerate(registers)]
    got = feed(account(), stream)
    assert hours(got) == {
        at(9): (approx(6.0), MEASURED, 1.0),
        at(10): (approx(12.0), MEASURED, 1.0),
        at(11): (approx(3.0), MEASURED, 1.0),
    }
    # each hour is emitted by the first reading at or after its end, and only then
    assert [i for i, o in enumerate(got) if o.hourly] == [6, 12, 18]
    assert sum(c for c, _, _ in hours(got).values()) == approx(got[-1].total - got[0].total)
    assert got[-1].total - got[0].total == 21.0  # 121 - 100


def test_interval_across_the_hour_is_split_by_time() -> None:
    # 09:55 -> 10:05 with 2 kWh: 1 kWh to 09:00 and 1 kWh to 10:00
    acc = account()
    acc.observe(at(9, 55), 50.0)
    first = acc.observe(at(10, 5), 52.0)
    (nine,) = first.hourly
    assert nine.time == at(9)
    # only 09:55-10:00 was seen (the account started at 09:55): coverage 5/60, but all of it
    # from a normal interval, so measured
    assert hour_of(nine) == (approx(1.0), MEASURED, approx(5 / 60))
    # then +1 kWh every 10 minutes to 10:55 (57), and 2 kWh from 10:55 to 11:05 (59)
    rest = feed(acc, [(at(10, 5 + 10 * i), 52.0 + i) for i in range(1, 6)] + [(at(11, 5), 59.0)])
    # 10:00 = 1 (10:00-10:05) + 5 x 1 (10:05-10:55) + 1 (half of 10:55-11:05) = 7 kWh
    assert hours(rest) == {at(10): (approx(7.0), MEASURED, 1.0)}
    assert acc.state().open_hour == HourBucket(
        start_ns=to_ns(at(11)), consumption=1.0, covered_ns=5 * 60 * 10**9
    )


def test_gap_across_hours_is_spread_flagged_and_conserved() -> None:
    # +1 kWh every 10 min from 10:00 (95) to 10:50 (100); nothing until 14:10 (120): 20 kWh
    # over 200 minutes = 0.1 kWh/min; then +1 kWh every 10 min again until 15:00 (125)
    before = [(at(10, 10 * i), 95.0 + i) for i in range(6)]
    after = [(at(14, 10 * i), 119.0 + i) for i in range(1, 6)] + [(at(15, 0), 125.0)]
    got = feed(account(), [*before, *after])
    # the 14:10 reading closes 10:00, 11:00, 12:00 and 13:00 at once, in order
    assert [r.time for r in got[6].hourly] == [at(10), at(11), at(12), at(13)]
    assert hours(got) == {
        # 10:00: 5 kWh measured (10:00-10:50) + 10/200 x 20 = 1 kWh of the gap (10:50-11:00)
        at(10): (approx(5 + 1.0), INTERPOLATED, approx(50 / 60)),
        # 11:00, 12:00, 13:00: 60/200 x 20 = 6 kWh each, all gap
        at(11): (approx(6.0), INTERPOLATED, 0.0),
        at(12): (approx(6.0), INTERPOLATED, 0.0),
        at(13): (approx(6.0), INTERPOLATED, 0.0),
        # 14:00: 10/200 x 20 = 1 kWh of the gap (14:00-14:10) and 5 x 1 kWh measured
        at(14): (approx(1.0 + 5), INTERPOLATED, approx(50 / 60)),
    }
    assert sum(c for c, _, _ in hours(got).values()) == approx(125.0 - 95.0)


def test_max_gap_is_the_longest_normal_interval_and_configurable() -> None:
    # exactly 15 minutes is normal; 15 minutes and 1 second is a gap
    normal = feed(account(), [(at(9, 45), 0.0), (at(10), 1.0), (at(11), 2.0)])
    assert hours(normal)[at(9)] == (1.0, MEASURED, 0.25)  # 09:45-10:00 of 60 minutes
    gap = feed(account(), [(at(9, 44, 59), 0.0), (at(10), 1.0), (at(11), 2.0)])
    assert hours(gap)[at(9)] == (1.0, INTERPOLATED, 0.0)
    # with max_gap 4 h, the gap of the test above is a normal interval: all measured
    stream = [(at(10, 50), 100.0), (at(14, 10), 120.0), (at(15), 125.0)]
    got = hours(feed(account(max_gap=timedelta(hours=4)), stream))
    assert got[at(10)] == (approx(1.0), MEASURED, approx(10 / 60))  # from 10:50
    for h in (11, 12, 13):
        assert got[at(h)] == (approx(6.0), MEASURED, 1.0)
    assert got[at(14)] == (approx(1.0 + 5.0), MEASURED, 1.0)  # 14:10-15:00: 5 kWh in 50 min


def test_a_long_gap_conserves_odd_figures() -> None:
    # 123.456 kWh from Tue 10:07:13 to Fri 12:31:47: 3 d 2 h 24 min 34 s = 267 874 s.
    # It touches 24/11 10:00 .. 27/11 12:00: 3 x 24 + 2 + 1 = 75 hours; all but the last
    # (open: 12:00-12:31:47 = 1 907 s) close.
    acc = account()
    acc.observe(at(10, 7, 13), 1000.0)
    o = acc.observe(at(12, 31, 47, day=27), 1123.456)
    assert len(o.hourly) == 74
    assert [r.time for r in o.hourly] == [at(10) + timedelta(hours=i) for i in range(74)]
    open_share = 123.456 * 1907 / 267_874
    assert sum(hour_of(r)[0] for r in o.hourly) == approx(123.456 - open_share)
    open_hour = acc.state().open_hour
    assert open_hour is not None and open_hour.consumption == approx(open_share)
    # a whole hour inside the gap: 123.456 x 3600 / 267 874
    assert hour_of(o.hourly[1]) == (approx(123.456 * 3600 / 267_874), INTERPOLATED, 0.0)
    # the first, 10:07:13-11:00 = 3 167 s
    assert hour_of(o.hourly[0]) == (approx(123.456 * 3167 / 267_874), INTERPOLATED, 0.0)


def test_split_by_hour_shares_add_up_and_are_never_negative() -> None:
    start, end = to_ns(at(9, 59, 59.999999)), to_ns(at(12, 0, 0.000001))
    pieces = list(split_by_hour(start, end, 7.0))
    assert [h for h, _, _ in pieces] == [to_ns(at(h)) for h in (9, 10, 11, 12)]
    assert [n for _, n, _ in pieces] == [1_000, 3_600 * 10**9, 3_600 * 10**9, 1_000]
    assert all(share >= 0 for _, _, share in pieces)
    assert sum(share for _, _, share in pieces) == approx(7.0)
    with pytest.raises(ValueError, match="empty interval"):
        list(split_by_hour(start, start, 1.0))


def test_hourly_readings_follow_the_schema() -> None:
    acc = account()
    feed(acc, [(at(9, 30), 1.0), (at(9, 40), 2.0), (at(9, 50), 2.5)])
    (hour,) = acc.observe(at(10, 0), 3.0).hourly
    # 09:30-10:00: 1 + 0.5 + 0.5 = 2 kWh; 30 of 60 minutes seen, all in 10-minute intervals
    assert hour.measurement is schema.ENERGY_HOURLY
    assert hour.time == at(9)  # the start of the hour
    assert hour.to_line() == (
        "energy_hourly,branch=b,carrier=electricity,device=meter "
        f'consumption=2.0,coverage=0.5,quality="measured" {to_ns(at(9))}'
    )
    assert {q.value for q in HourQuality} == set(schema.HOURLY_QUALITY.choices)


# -- local days -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "n_hours", "local_hours", "totals"),
    [
        # spring forward: 02:00 CET -> 03:00 CEST; local 29/3 = 28/3 23:00Z .. 29/3 22:00Z
        (
            date(2026, 3, 29),
            23,
            [0, 1, *range(3, 24)],
            # hour k (from 28/3 21:00Z) uses k + 1 kWh; the local day is k = 2..24
            {
                date(2026, 3, 28): 1 + 2,
                date(2026, 3, 29): (3 + 25) * 23 / 2,  # 322
                date(2026, 3, 30): 26 + 27 + 28 + 29,  # 110
            },
        ),
        # fall back: 03:00 CEST -> 02:00 CET; local 25/10 = 24/10 22:00Z .. 25/10 23:00Z
        (
            date(2026, 10, 25),
            25,
            [0, 1, 2, 2, *range(3, 24)],
            # hour k (from 24/10 20:00Z) uses k + 1 kWh; the local day is k = 2..26
            {
                date(2026, 10, 24): 1 + 2,
                date(2026, 10, 25): (3 + 27) * 25 / 2,  # 375
                date(2026, 10, 26): 28 + 29,
            },
        ),
    ],
)
def test_dst_days_have_23_and_25_hours_and_local_totals(
    day: date, n_hours: int, local_hours: list[int], totals: dict[date, float]
) -> None:
    # hourly readings from 2 h before local midnight, 30 of them: reading k has register
    # k (k + 1) / 2, so hour k uses k + 1 kWh; readings an hour apart are normal (max_gap 1 h)
    start = (datetime.combine(day, datetime.min.time(), CPH) - timedelta(hours=2)).astimezone(UTC)
    stream = [(start + timedelta(hours=k), k * (k + 1) / 2) for k in range(30)]
    got = hours(feed(account(max_gap=timedelta(hours=1)), stream))
    assert len(got) == 29  # hours 0..28; 29 is not closed
    assert all(q == MEASURED and cov == 1.0 for _, q, cov in got.values())
    in_day = [t for t in got if t.astimezone(CPH).date() == day]
    assert len(in_day) == n_hours
    assert [t.astimezone(CPH).hour for t in in_day] == local_hours
    days = local_day_totals(((t, c) for t, (c, _, _) in got.items()), CPH)
    assert days == {d: approx(v) for d, v in totals.items()}
    assert sum(days.values()) == approx(29 * 30 / 2)  # 1 + 2 + ... + 29 = 435


def test_local_day_totals_sorts_days_and_refuses_naive_times() -> None:
    hourly = [(at(23, day=25), 2.0), (at(22, day=24), 1.0), (at(21, day=24), 0.5)]
    # 25/11 23:00Z is 26/11 00:00 CET; 24/11 22:00Z and 21:00Z are 23:00 and 22:00 on 24/11
    assert list(local_day_totals(hourly, CPH).items()) == [
        (date(2026, 11, 24), 1.5),
        (date(2026, 11, 26), 2.0),
    ]
    with pytest.raises(ValueError, match="no time zone"):
        local_day_totals([(datetime(2026, 11, 24, 9), 1.0)], CPH)


# -- persisted state --------------------------------------------------------------------------

# every kind of step, at odd times, for an account with rollover 1000
RESUME_STREAM: list[tuple[datetime, float]] = [
    (at(9, 3, 20), 990.0),  # first: top tenth of the range
    (at(9, 13, 20), 995.5),  # + 5.5
    (at(9, 23, 20), 3.0),  # wrap: 1000 - 995.5 + 3 = 7.5
    (at(9, 31), 2.9),  # dip: 96.7 % of 3, noise
    (at(9, 40), 10.0),  # + 7 over the reference 3
    (at(10, 20), 20.0),  # + 10 over a 40-minute gap
    (at(10, 29, 59.5), 1.0),  # reset: counts 1 in full
    (at(10, 35), 4.25),  # + 3.25
    (at(11), 6.0),  # + 1.75 over a 25-minute gap, ending exactly on the hour
    (at(11, 12), 7.0),  # + 1
    (at(11, 59, 59.999999), 9.0),  # + 2 over a 47.99-minute gap
    (at(12, 5), 9.5),  # + 0.5
]


def test_resume_stream_figures() -> None:
    got = feed(account(rollover=1000), RESUME_STREAM)
    assert [o.consumption for o in got] == [0, 5.5, 7.5, 0, 7, 10, 1, 3.25, 1.75, 1, 2, 0.5]
    assert got[-1].total == approx(990 + 5.5 + 7.5 + 7 + 10 + 1 + 3.25 + 1.75 + 1 + 2 + 0.5)
    # 09:00 closes at 10:20: 5.5 + 7.5 + 0 + 7 + 20/40 x 10 (09:40-10:00 of the gap) = 25;
    # covered 09:03:20-09:40 = 36 min 40 s = 2 200 s, the gap part is not
    # 10:00 closes at 11:00: 5 (the gap's 10:00-10:20) + 1 + 3.25 + 1.75 = 11; covered
    # 10:20-10:35 = 15 min (10:35-11:00 is a gap)
    # 11:00 closes at 12:05: 1 (11:00-11:12) + 2 (the gap 11:12-11:59:59.999999, all inside
    # the hour) + 0.5 x 1 us / 300 000 001 us (the first microsecond of the last interval);
    # covered 12 min + 1 us (the gap is not)
    hourly = hours(got)
    assert hourly[at(9)] == (approx(25.0), INTERPOLATED, approx(2200 / 3600))
    assert hourly[at(10)] == (approx(11.0), INTERPOLATED, approx(15 / 60))
    assert hourly[at(11)] == (
        approx(1 + 2 + 0.5 / 300_000_001),
        INTERPOLATED,
        approx((12 * 60 * 10**6 + 1) / (3600 * 10**6)),
    )
    assert [o.quality for o in got].count(Quality.SUSPECT) == 1


@pytest.mark.parametrize("split", range(len(RESUME_STREAM) + 1))
def test_resume_from_persisted_state_at_every_split_is_exact(split: int) -> None:
    whole = account(rollover=1000)
    expected = feed(whole, RESUME_STREAM)
    first = account(rollover=1000)
    got = feed(first, RESUME_STREAM[:split])
    saved = first.state().to_json()
    resumed = EnergyAccount(
        branch="b",
        device="meter",
        carrier="electricity",
        rollover=1000,
        state=AccountState.from_json(saved),
    )
    got += feed(resumed, RESUME_STREAM[split:])
    assert got == expected
    assert [[r.to_line() for r in o.hourly] for o in got] == [
        [r.to_line() for r in o.hourly] for o in expected
    ]
    assert resumed.state() == whole.state()


def test_state_round_trips_through_json_and_is_small() -> None:
    acc = account()
    feed(acc, [(at(9, 50), 10.0), (at(10, 0), 11.0), (at(10, 5), 10.5)])
    state = acc.state()
    assert state == AccountState(
        last_ns=to_ns(at(10, 5)),
        last_register=10.5,  # a dip: the reference stays at 11
        reference=11.0,
        offset=0.0,
        open_hour=HourBucket(start_ns=to_ns(at(10)), consumption=0.0, covered_ns=300 * 10**9),
    )
    assert state.total == 11.0
    assert AccountState.from_json(state.to_json()) == state
    assert json.loads(state.to_json()) == {
        "v": 1,
        "last_ns": to_ns(at(10, 5)),
        "last_register": 10.5,
        "reference": 11.0,
        "offset": 0.0,
        "open_hour": [to_ns(at(10)), 0.0, 300 * 10**9, False],
    }
    assert AccountState.from_json(AccountState().to_json()) == AccountState()


def test_state_of_the_first_release_still_loads() -> None:
    legacy = json.dumps(
        {
            "last_ns": to_ns(at(9, 50)),
            "reference": 100.0,
            "offset": 5.0,
            "buckets": {str(to_ns(at(9))): [1.5, 600 * 10**9, False]},
        }
    )
    acc = EnergyAccount(
        branch="b", device="meter", carrier="electricity", state=AccountState.from_json(legacy)
    )
    o = acc.observe(at(10), 101.0)
    # 1.5 kWh so far in 09:00 + 1 kWh 09:50-10:00; covered 10 + 10 min; total 5 + 101
    assert o.total == 106.0
    assert [hour_of(r) for r in o.hourly] == [(2.5, MEASURED, approx(20 / 60))]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[]", "not an object"),
        ('{"v": 2}', "state version 2"),
        ('{"v": 1, "last_ns": 1}', "missing 'open_hour'"),
        (
            '{"v": 1, "last_ns": 1, "last_register": 1.0, "reference": null, "offset": 0.0,'
            ' "open_hour": null}',
            "go together",
        ),
        (
            '{"v": 1, "last_ns": null, "last_register": null, "reference": null, "offset": -1,'
            ' "open_hour": null}',
            "offset -1",
        ),
        (
            '{"v": 1, "last_ns": 10, "last_register": 1.0, "reference": 1.0, "offset": 0.0,'
            ' "open_hour": [3600000000000, 0.0, 0, false]}',
            "open hour does not hold the last reading",
        ),
        ("not json", "Expecting value"),
    ],
)
def test_unreadable_state_raises(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"not an energy account state.*{why}"):
        AccountState.from_json(text)


# -- rejected input ---------------------------------------------------------------------------


def test_bad_readings_raise_naming_the_device_and_change_nothing() -> None:
    acc = account(rollover=1000)
    acc.observe(at(9), 1.0)
    before = acc.state()
    bad: list[tuple[datetime, float, str]] = [
        (at(9), 2.0, r"meter: reading at 2026-11-24T09:00:00\+00:00 is not after the previous"),
        (at(8, 59), 2.0, "meter: reading at .* is not after"),
        (datetime(2026, 11, 24, 10), 2.0, "meter: reading time .* has no time zone"),
        (at(10), float("nan"), "meter: register nan is not a finite number"),
        (at(10), float("inf"), "meter: register inf is not a finite number"),
        (at(10), -1.0, "meter: register -1.0 is not a finite number >= 0"),
        (at(10), 1000.0, "meter: register 1000.0 is not below the rollover 1000"),
        (at(10), True, "meter: register True is not a number"),
    ]
    for t, reg, message in bad:
        with pytest.raises(ValueError, match=message):
            acc.observe(t, reg)
    assert acc.state() == before
    assert acc.observe(at(9, 10), 2.0).consumption == 1.0  # as if the bad ones never came


def test_account_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="meter: max_gap 0:00:00 must be above 0"):
        account(max_gap=timedelta(0))
    for rollover in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"meter: rollover .* must be a finite number above 0"):
            account(rollover=rollover)
    with pytest.raises(
        ValueError, match=r"meter: saved reference 1000\.0 is not below the rollover"
    ):
        EnergyAccount(
            branch="b",
            device="meter",
            carrier="electricity",
            rollover=1000,
            state=AccountState(last_ns=0, last_register=1000.0, reference=1000.0),
        )


# -- the ledger -------------------------------------------------------------------------------


def meter(
    t: datetime,
    register: float,
    *,
    device: str = "m",
    carrier: str = "electricity",
    quality: Quality = Quality.GOOD,
) -> Reading:
    return Reading(
        branch="b",
        device=device,
        measurement=schema.ENERGY,
        fields={schema.ENERGY_REGISTER.key: register, schema.ENERGY_POWER.key: 5.0},
        tags={schema.Tag.CARRIER.value: carrier},
        time=t,
        quality=quality,
    )


def totals(out: list[Reading]) -> list[object]:
    return [r.fields.get(schema.ENERGY_TOTAL.key) for r in out if r.measurement is schema.ENERGY]


def consumed(out: list[Reading]) -> list[tuple[datetime, object]]:
    return [(r.time, r.fields[CONSUMPTION]) for r in out if r.measurement is schema.ENERGY_HOURLY]


def test_ledger_adds_totals_and_hours_and_resumes_from_saved_state() -> None:
    saved: dict[str, str] = {}
    ledger = EnergyLedger(branch="b", load=saved.get)
    out, state = ledger.process([meter(at(9, 50), 100.0), meter(at(10, 0), 101.0)])
    saved.update(state)
    assert list(state) == ["energy:m:electricity"]
    assert totals(out) == [100.0, 101.0]
    assert consumed(out) == [(at(9), 1.0)]  # 09:50-10:00
    restarted = EnergyLedger(branch="b", load=saved.get)  # after a restart
    out, _ = restarted.process([meter(at(10, 10), 103.0), meter(at(11, 0), 104.0)])
    assert totals(out) == [103.0, 104.0]
    # 10:00: 2 kWh 10:00-10:10 + 1 kWh 10:10-11:00 (a 50-minute gap)
    assert consumed(out) == [(at(10), 3.0)]


def test_ledger_max_gap_per_device_for_meters_polled_slowly() -> None:
    """Readings 20 minutes apart: gaps for a meter on the default 15-minute max_gap, normal
    intervals for one the gateway gave 30 minutes (it polls it every 10 minutes)."""
    ledger = EnergyLedger(
        branch="b", load=lambda _key: None, max_gaps={"slow": timedelta(minutes=30)}
    )
    times = [at(9), at(9, 20), at(9, 40), at(10, 0)]
    out, _ = ledger.process(
        [meter(t, 10.0 + i, device=d) for i, t in enumerate(times) for d in ("m", "slow")]
    )
    hours = {r.device: r.fields[QUALITY] for r in out if r.measurement is schema.ENERGY_HOURLY}
    assert hours == {"m": "interpolated", "slow": "measured"}


def test_gateway_gives_each_polled_meter_three_poll_intervals_of_max_gap() -> None:
    from openbranch.edge.core.config import GatewayConfig
    from openbranch.edge.runtime.gateway import energy_max_gaps

    def device(name: str, poll: dict[str, float] | None) -> dict[str, object]:
        out: dict[str, object] = {
            "id": name,
            "profile": "eastron-sdm630",
            "transport": {"type": "modbus_tcp", "host": "10.0.0.1", "unit_id": 1},
        }
        if poll is not None:
            out["poll"] = poll
        return out

    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "b", "name": "B"},
            "devices": [
                device("fast", {"default": 10}),
                device("slow", {"default": 60, "energy": 900}),
            ],
        }
    )
    gaps = energy_max_gaps(config)
    assert gaps["fast"] == DEFAULT_MAX_GAP  # 30 s would be shorter than the default
    assert gaps["slow"] == timedelta(minutes=45)


def test_ledger_keeps_one_account_per_device_and_carrier() -> None:
    ledger = EnergyLedger(branch="b", load=lambda _key: None)
    out, state = ledger.process(
        [
            meter(at(9), 10.0, carrier="district_heating"),
            meter(at(9), 500.0, carrier="water"),  # same device, same time: another counter
            meter(at(9, 10), 12.0, carrier="district_heating"),
            meter(at(9, 10), 501.0, carrier="water"),
        ]
    )
    assert totals(out) == [10.0, 500.0, 12.0, 501.0]
    assert sorted(state) == ["energy:m:district_heating", "energy:m:water"]


def test_ledger_flags_dips_counts_rejects_and_passes_other_readings() -> None:
    ledger = EnergyLedger(branch="b", load=lambda _key: None, rollovers={"m": 1000.0})
    door = Reading(
        branch="b",
        device="d",
        measurement=schema.DOOR,
        fields={schema.DOOR_OPEN.key: True},
        time=at(9),
    )
    out, _ = ledger.process(
        [
            meter(at(9), 999.0),
            door,
            meter(at(9, 5), 1.0),  # wraps at the configured rollover: 1 + 1 = 2 kWh
            meter(at(9, 10), 0.95),  # a dip
            meter(at(9, 15), 3.0, quality=Quality.SUSPECT),  # flagged by its integration
            meter(at(9, 15), 4.0),  # not after the previous one: rejected, kept without total
        ]
    )
    assert out[1] is door
    assert totals(out) == [999.0, 1001.0, 1001.0, 1003.0, None]
    assert [r.quality for r in out if r.measurement is schema.ENERGY] == [
        Quality.GOOD,
        Quality.GOOD,
        Quality.SUSPECT,
        Quality.SUSPECT,
        Quality.GOOD,
    ]
    assert ledger.rejected == 1


def test_ledger_reads_the_first_release_key_and_survives_a_corrupt_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    legacy = json.dumps(
        {"last_ns": to_ns(at(9, 50)), "reference": 100.0, "offset": 5.0, "buckets": {}}
    )
    saved = {"energy:m": legacy, "energy:x:electricity": "{broken"}
    ledger = EnergyLedger(branch="b", load=saved.get)
    out, state = ledger.process([meter(at(10), 101.0), meter(at(10), 7.0, device="x")])
    assert totals(out) == [106.0, 7.0]  # 5 + 101; x starts afresh at its register
    assert sorted(state) == ["energy:m:electricity", "energy:x:electricity"]
    assert ledger.unreadable_states == 1
    assert "x: saved account unreadable, starting afresh" in caplog.text


def test_ledger_logs_a_reset(caplog: pytest.LogCaptureFixture) -> None:
    ledger = EnergyLedger(branch="b", load=lambda _key: None)
    with caplog.at_level(logging.WARNING, logger="openbranch.edge.telemetry.energy"):
        ledger.process([meter(at(9), 1000.0), meter(at(9, 10), 5.0)])
    assert "m: counter fell to 5.0: a reset or a new meter, counted in full" in caplog.text


# -- rollovers from the devices ---------------------------------------------------------------

UINT16_CENTI = 2**16 * 0.01  # a uint16 register of 0.01 kWh: reads up to 655.35, then 0


class WidthSource:
    """A device source that knows its register widths (``edge.device.Rollovers``)."""

    def __init__(self, device_id: str, rollovers: dict[tuple[str, str], float]) -> None:
        self.device_id = device_id
        self._rollovers = rollovers

    def rollovers(self) -> dict[tuple[str, str], float]:
        return self._rollovers


class PlainSource:
    """A device source without register widths (as an MQTT device)."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id


def test_energy_rollovers_come_from_the_sources_energy_register() -> None:
    register = (schema.ENERGY.name, schema.ENERGY_REGISTER.key)
    sources = [
        WidthSource("meter", {register: UINT16_CENTI, ("energy", "power_w"): 6553.6}),
        WidthSource("lights", {("light", "level"): 32768.0}),  # no energy counter
        WidthSource("float-meter", {}),  # a float register: no width
        PlainSource("mqtt-meter"),
    ]
    assert energy_rollovers(sources) == {"meter": UINT16_CENTI}  # type: ignore[arg-type]


def uint16_stream() -> list[Reading]:
    """A uint16 meter of 0.01 kWh that wraps at 09:30: 650.00, 655.00, (wrap) 1.64, 2.00."""
    return [
        meter(at(9, 10), 650.00),
        meter(at(9, 20), 655.00),
        meter(at(9, 30), 1.64),  # 655.36 - 655.00 + 1.64 = 2.00 kWh
        meter(at(9, 40), 2.00),
        meter(at(10, 0), 2.00),
    ]


def test_a_wrap_at_the_registers_width_is_consumption_not_a_reset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    register = (schema.ENERGY.name, schema.ENERGY_REGISTER.key)
    rollovers = energy_rollovers([WidthSource("m", {register: UINT16_CENTI})])  # type: ignore[list-item]
    ledger = EnergyLedger(branch="b", load=lambda _key: None, rollovers=rollovers)
    with caplog.at_level(logging.INFO, logger="openbranch.edge.telemetry.energy"):
        out, _ = ledger.process(uint16_stream())
    # 650 + 5 + 2.00 + 0.36 + 0 kWh; the 09:00 hour: 5 + 2 + 0.36 = 7.36 kWh
    assert totals(out) == [650.0, 655.0, approx(657.0), approx(657.36), approx(657.36)]
    assert consumed(out) == [(at(9), approx(7.36))]
    assert "counter wrapped to 1.64" in caplog.text
    assert "a reset or a new meter" not in caplog.text
    unknown = EnergyLedger(branch="b", load=lambda _key: None)  # the same meter, width unknown
    out, _ = unknown.process(uint16_stream())
    assert totals(out) == [650.0, 655.0, approx(656.64), approx(657.0), approx(657.0)]
    assert consumed(out) == [(at(9), approx(7.0))]  # the wrap's 0.36 kWh to the top: lost


def test_a_real_reset_of_a_known_width_counter_stays_a_reset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = EnergyLedger(branch="b", load=lambda _key: None, rollovers={"m": UINT16_CENTI})
    with caplog.at_level(logging.WARNING, logger="openbranch.edge.telemetry.energy"):
        out, _ = ledger.process(
            [
                meter(at(9, 0), 300.00),  # mid-range: a drop to 0 from here is no wrap
                meter(at(9, 10), 0.50),  # reset (a new meter): 0.50 counts in full
                meter(at(9, 20), 1.00),
            ]
        )
    assert totals(out) == [300.0, 300.5, 301.0]
    assert "m: counter fell to 0.5: a reset or a new meter, counted in full" in caplog.text


def test_a_saved_reference_above_a_new_rollover_does_not_stop_the_ledger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The meter's profile changed from a float register to a uint16 one: the account saved
    with 12,000 kWh cannot wrap at 655.36; it goes on without a rollover, logged."""
    saved = {
        "energy:m:electricity": AccountState(
            last_ns=to_ns(at(9)), last_register=12_000.0, reference=12_000.0, offset=0.0
        ).to_json()
    }
    ledger = EnergyLedger(branch="b", load=saved.get, rollovers={"m": UINT16_CENTI})
    out, state = ledger.process([meter(at(9, 10), 5.0), meter(at(9, 20), 6.0)])
    assert totals(out) == [12_005.0, 12_006.0]  # the drop was a reset, then it counts on
    assert "m: saved reference 12000.0 is not below the register's rollover" in caplog.text
    assert json.loads(state["energy:m:electricity"])["reference"] == 6.0


# -- clock steps (issue 12 point 9) -----------------------------------------------------------
# A meter that counts 1 kWh every 5 minutes of true time, read every 5 minutes. ``true`` is the
# monotonic clock (minutes since the first reading); the wall clock is stepped on the way, so
# each reading carries clock_offset = wall - monotonic, as the gateway's committer passes it.

Step = tuple[int, timedelta]  # from this true minute on, the wall clock is off by this much


def stepped(start: datetime, until: int, steps: list[Step]) -> list[tuple[datetime, int]]:
    """(wall time, true minute) of a reading every 5 true minutes up to ``until``."""
    out = []
    for minute in range(0, until + 1, 5):
        off = sum((d for m, d in steps if minute >= m), timedelta())
        out.append((start + timedelta(minutes=minute) + off, minute))
    return out


def feed_stepped(acc: EnergyAccount, readings: list[tuple[datetime, int]]) -> list[Observation]:
    return [
        acc.observe(wall, minute / 5, clock_offset=wall.timestamp() - minute * 60.0)
        for wall, minute in readings
    ]


HOUR_BACK = stepped(at(9, 40), 145, [(55, -timedelta(hours=1))])  # 10:30 -> 09:35 ... 11:05
DAY_FORTH_AND_BACK = stepped(
    at(10, 5), 120, [(15, timedelta(days=1)), (25, -timedelta(days=1))]
)  # 10:05-10:15, then tomorrow 10:20-10:25, then today 10:30 ... 12:05
HOUR_FORTH = stepped(at(9, 40), 80, [(35, timedelta(hours=1))])  # 09:40-10:10, 11:15 ... 12:00


@pytest.mark.parametrize(
    ("readings", "expected", "open_hour"),
    [
        pytest.param(
            HOUR_BACK,
            # 09:00 closes at 10:00 as usual: 4 kWh (09:40-10:00), covered 20 min.
            # 10:00: 6 kWh to 10:30; the clock goes back to 09:35, before the floor (10:00,
            # the end of the last hour emitted): the readings 09:35-10:00 are held in 10:00
            # (6 kWh, no coverage), then 10:00-11:00 counts as usual (12 kWh, 60 min):
            # 24 kWh, interpolated, coverage 30 + 60 min capped at the hour.
            {at(9): (4.0, MEASURED, approx(20 / 60)), at(10): (24.0, INTERPOLATED, 1.0)},
            (at(11), 1.0),
            id="an-hour-back",
        ),
        pytest.param(
            DAY_FORTH_AND_BACK,
            # 10:00 today is closed by the step forward (tomorrow 10:20 is past its end), with
            # the 2 kWh it had; the interval across the step is tomorrow 10:15-10:20 (its
            # monotonic 5 minutes, ending at the new time); nothing for the hours skipped.
            # Back to today 10:30: tomorrow's 10:00 (2 kWh) moves to today 11:00, the floor;
            # 10:30-11:00 is held there (6 kWh), then 11:00-12:00 counts (12 kWh): 21 kWh.
            {at(10): (2.0, MEASURED, approx(10 / 60)), at(11): (21.0, INTERPOLATED, 1.0)},
            (at(12), 1.0),
            id="a-day-forward-and-back",
        ),
        pytest.param(
            HOUR_FORTH,
            # 09:00: 4 kWh; 10:00 is closed by the step (10:10 -> 11:15) with its 2 kWh; the
            # interval across the step is 11:10-11:15 (1 kWh, no coverage), then 11:15-12:00
            # counts: 10 kWh in 11:00, covered 45 min. No consumption is invented for
            # 10:10-11:10, which the clock skipped.
            {
                at(9): (4.0, MEASURED, approx(20 / 60)),
                at(10): (2.0, MEASURED, approx(10 / 60)),
                at(11): (10.0, INTERPOLATED, approx(45 / 60)),
            },
            None,
            id="an-hour-forward",
        ),
    ],
)
def test_a_clock_step_neither_counts_twice_nor_writes_an_hour_the_clock_has_not_reached(
    readings: list[tuple[datetime, int]],
    expected: dict[datetime, Hour],
    open_hour: tuple[datetime, float] | None,
) -> None:
    acc = account()
    got = feed_stepped(acc, readings)  # none rejected
    assert hours(got) == expected  # each hour once (``hours`` checks), as worked out above
    for (wall, _minute), o in zip(readings, got, strict=True):
        for r in o.hourly:  # closed by a reading at or after its end, on the wall clock
            assert r.time + timedelta(hours=1) <= wall
    assert [o.total for o in got] == [m / 5 for _, m in readings]  # every reading, once
    last = acc.state()
    in_open = 0.0 if last.open_hour is None else last.open_hour.consumption
    assert sum(c for c, _, _ in expected.values()) + in_open == approx(readings[-1][1] / 5)
    assert (
        None if last.open_hour is None else (last.open_hour.start, last.open_hour.consumption)
    ) == open_hour


def test_without_clock_offsets_a_step_is_a_gap_and_a_reading_back_is_refused() -> None:
    """What the offsets change: the same day forward read without them is a gap spread over 24
    hours of rows (tomorrow's hours written today), and the readings after the step back are
    refused until the wall clock passes tomorrow's reading."""
    acc = account()
    got: list[Observation] = []
    refused = 0
    for wall, minute in DAY_FORTH_AND_BACK:
        try:
            got.append(acc.observe(wall, minute / 5))
        except ValueError:
            refused += 1
    assert len(hours(got)) == 24  # today 10:00 ... tomorrow 09:00, interpolated
    assert refused == len(DAY_FORTH_AND_BACK) - 5
    with_offsets = hours(feed_stepped(account(), DAY_FORTH_AND_BACK))
    assert sorted(with_offsets) == [at(10), at(11)]


def test_a_step_forward_keeps_the_skipped_hours_free_for_the_clock_coming_back() -> None:
    acc = account()
    got = feed_stepped(acc, DAY_FORTH_AND_BACK[:4])  # up to tomorrow 10:20
    assert hours(got) == {at(10): (2.0, MEASURED, approx(10 / 60))}
    state = acc.state()
    assert state.floor_ns == to_ns(at(11))  # the end of the last hour emitted, kept
    assert state.open_hour == HourBucket(to_ns(at(10, day=25)), consumption=1.0, gap=True)
    assert got[-1].clock_step == timedelta(days=1)
    assert json.loads(state.to_json())["floor_ns"] == to_ns(at(11))
    assert AccountState.from_json(state.to_json()) == state


@pytest.mark.parametrize(
    ("step", "flagged"),
    [
        (timedelta(seconds=50), False),  # within CLOCK_STEP: an ordinary interval
        (timedelta(seconds=-50), False),
        (timedelta(seconds=70), True),  # beyond it: placed by the monotonic clock
        (timedelta(seconds=-70), True),
    ],
)
def test_a_step_is_what_moves_the_clock_more_than_a_minute_from_the_monotonic_time(
    step: timedelta, flagged: bool
) -> None:
    acc = account()
    got = feed_stepped(acc, stepped(at(9, 10), 20, [(10, step)]))
    assert (got[2].clock_step is not None) is flagged
    bucket = acc.state().open_hour
    assert bucket is not None
    assert bucket.gap is flagged
    assert bucket.consumption == 4.0


def test_a_reading_at_the_same_time_with_no_step_is_still_refused() -> None:
    acc = account()
    acc.observe(at(9), 1.0, clock_offset=at(9).timestamp())
    with pytest.raises(ValueError, match="is not after the previous one"):
        acc.observe(at(9), 2.0)  # no offset: nothing says the clock stepped


@pytest.mark.parametrize("floor", [at(11), at(9, 30)])  # after the last reading; not an hour
def test_a_state_with_a_floor_that_cannot_be_is_refused(floor: datetime) -> None:
    raw = json.loads(
        AccountState(last_ns=to_ns(at(10, 30)), last_register=1.0, reference=1.0).to_json()
    )
    raw["floor_ns"] = to_ns(floor)
    with pytest.raises(ValueError, match=r"floor .* is not an hour before the last reading"):
        AccountState.from_json(json.dumps(raw))


def test_the_ledger_passes_each_readings_clock_offset_and_logs_a_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = EnergyLedger(branch="b", load=lambda _key: None)
    readings = [meter(wall, minute / 5) for wall, minute in HOUR_BACK]
    offsets = [wall.timestamp() - minute * 60.0 for wall, minute in HOUR_BACK]
    with pytest.raises(ValueError, match="1 clock offsets for 30 readings"):
        ledger.process(readings, clock_offsets=offsets[:1])
    with caplog.at_level(logging.WARNING, logger="openbranch.edge.telemetry.energy"):
        out, _ = ledger.process(readings, clock_offsets=offsets)
    assert ledger.rejected == 0
    assert totals(out) == [m / 5 for _, m in HOUR_BACK]
    assert consumed(out) == [(at(9), 4.0), (at(10), 24.0)]
    steps = [r.getMessage() for r in caplog.records if "clock stepped" in r.getMessage()]
    assert steps == [
        "energy: m: the clock stepped -1 day, 23:00:00 since the previous reading: the interval"
        " is placed by the monotonic clock, its hours are interpolated"
    ]  # once, for the step; not for each reading held after it
