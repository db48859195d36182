"""The admission policy, one table row per rule and per reason (edge.hours.admission)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from openbranch.edge.core.admission import MESSAGES, EntryRules, Patron, Reason
from openbranch.edge.core.schedule import Mode
from openbranch.edge.hours.admission import age_on, decide, gate

NOW = datetime(2026, 12, 4, 19, 0, tzinfo=UTC)
TODAY = date(2026, 12, 4)
CLOSES = NOW + timedelta(hours=2)
GOOD = Patron(valid=True, pin_ok=True, birth_date=date(1980, 5, 1), category="adult")


def _decide(
    *,
    mode: Mode = Mode.SELF_SERVICE,
    patron: Patron = GOOD,
    rules: dict[str, Any] | None = None,
    occupancy: int | None = 10,
    closes_at: datetime | None = CLOSES,
    pin_given: bool = True,
) -> tuple[bool, Reason]:
    decision = decide(
        mode,
        patron,
        EntryRules.model_validate(rules or {}),
        now=NOW,
        today=TODAY,
        occupancy=occupancy,
        closes_at=closes_at,
        pin_given=pin_given,
    )
    return decision.admit, decision.reason


def _patron(**changes: Any) -> Patron:
    fields = {
        "valid": True,
        "pin_ok": True,
        "birth_date": date(1980, 5, 1),
        "category": "adult",
        **changes,
    }
    return Patron(**fields)


CASES: list[tuple[str, dict[str, Any], tuple[bool, Reason]]] = [
    ("a patron in good standing", {}, (True, Reason.ADMITTED)),
    ("closed: nobody", {"mode": Mode.CLOSED}, (False, Reason.CLOSED)),
    ("maintenance: nobody", {"mode": Mode.MAINTENANCE}, (False, Reason.CLOSED)),
    ("emergency: nobody", {"mode": Mode.EMERGENCY}, (False, Reason.EMERGENCY)),
    ("staffed: the door is free", {"mode": Mode.STAFFED}, (True, Reason.STAFFED)),
    (
        "staffed: free even for a blocked card",
        {"mode": Mode.STAFFED, "patron": _patron(valid=False)},
        (True, Reason.STAFFED),
    ),
    (
        "staffed with card entry configured: the card is checked",
        {
            "mode": Mode.STAFFED,
            "patron": _patron(card_lost=True),
            "rules": {"modes": {"staffed": "card", "self_service": "card_and_pin"}},
        },
        (False, Reason.CARD_LOST),
    ),
    (
        "self-service without card entry",
        {"rules": {"modes": {"staffed": "card"}}},
        (False, Reason.NO_CARD_ENTRY),
    ),
    (
        "the last 15 minutes before closing",
        {"closes_at": NOW + timedelta(minutes=15)},
        (False, Reason.CLOSING_SOON),
    ),
    (
        "16 minutes before closing",
        {"closes_at": NOW + timedelta(minutes=16)},
        (True, Reason.ADMITTED),
    ),
    (
        "no last-entry window",
        {"closes_at": NOW + timedelta(minutes=1), "rules": {"last_entry_minutes": 0}},
        (True, Reason.ADMITTED),
    ),
    ("at the cap", {"occupancy": 40, "rules": {"occupancy_cap": 40}}, (False, Reason.FULL)),
    ("below the cap", {"occupancy": 39, "rules": {"occupancy_cap": 40}}, (True, Reason.ADMITTED)),
    (
        "counter unavailable: the cap cannot refuse",
        {"occupancy": None, "rules": {"occupancy_cap": 40}},
        (True, Reason.ADMITTED),
    ),
    ("not a patron", {"patron": _patron(valid=False)}, (False, Reason.NOT_A_PATRON)),
    ("no PIN typed", {"pin_given": False}, (False, Reason.PIN_REQUIRED)),
    ("wrong PIN", {"patron": _patron(pin_ok=False)}, (False, Reason.WRONG_PIN)),
    ("PIN not checked", {"patron": _patron(pin_ok=None)}, (False, Reason.PIN_NOT_CHECKED)),
    (
        "card only: no PIN needed",
        {
            "pin_given": False,
            "patron": _patron(pin_ok=None),
            "rules": {"modes": {"self_service": "card"}},
        },
        (True, Reason.ADMITTED),
    ),
    ("card lost", {"patron": _patron(card_lost=True)}, (False, Reason.CARD_LOST)),
    (
        "card lost, rule off",
        {"patron": _patron(card_lost=True), "rules": {"refuse_card_lost": False}},
        (True, Reason.ADMITTED),
    ),
    ("charge denied", {"patron": _patron(charge_denied=True)}, (False, Reason.CHARGE_DENIED)),
    (
        "charge denied, rule off",
        {"patron": _patron(charge_denied=True), "rules": {"refuse_charge_denied": False}},
        (True, Reason.ADMITTED),
    ),
    (
        "too many overdue, rule off by default",
        {"patron": _patron(too_many_overdue=True)},
        (True, Reason.ADMITTED),
    ),
    (
        "too many overdue, rule on",
        {"patron": _patron(too_many_overdue=True), "rules": {"refuse_too_many_overdue": True}},
        (False, Reason.TOO_MANY_OVERDUE),
    ),
    (
        "fees above the limit",
        {"patron": _patron(fee_amount=Decimal("100.01")), "rules": {"fee_limit": "100"}},
        (False, Reason.FEES),
    ),
    (
        "fees at the limit",
        {"patron": _patron(fee_amount=Decimal("100.00")), "rules": {"fee_limit": "100"}},
        (True, Reason.ADMITTED),
    ),
    (
        "fees without a limit",
        {"patron": _patron(fee_amount=Decimal("5000"))},
        (True, Reason.ADMITTED),
    ),
    (
        "under age from the birth date (15 tomorrow)",
        {"patron": _patron(birth_date=date(2011, 12, 5)), "rules": {"min_age": 15}},
        (False, Reason.UNDER_AGE),
    ),
    (
        "15 today",
        {"patron": _patron(birth_date=date(2011, 12, 4)), "rules": {"min_age": 15}},
        (True, Reason.ADMITTED),
    ),
    (
        "under age by category",
        {
            "patron": _patron(birth_date=None, category="child"),
            "rules": {"min_age": 15, "under_age_categories": ["child"]},
        },
        (False, Reason.UNDER_AGE),
    ),
    (
        "age unknown, refused by default",
        {"patron": _patron(birth_date=None, category="adult"), "rules": {"min_age": 15}},
        (False, Reason.AGE_UNKNOWN),
    ),
    (
        "age unknown, admitted when configured",
        {
            "patron": _patron(birth_date=None),
            "rules": {"min_age": 15, "unknown_age": "admit"},
        },
        (True, Reason.ADMITTED),
    ),
    (
        "category not in the allowed list",
        {"patron": _patron(category="guest"), "rules": {"categories_allowed": ["adult"]}},
        (False, Reason.CATEGORY),
    ),
    (
        "no category, an allowed list given",
        {"patron": _patron(category=None), "rules": {"categories_allowed": ["adult"]}},
        (False, Reason.CATEGORY),
    ),
    (
        "category refused",
        {"patron": _patron(category="guest"), "rules": {"categories_refused": ["guest"]}},
        (False, Reason.CATEGORY),
    ),
    (
        "order: not a patron before a wrong PIN",
        {"patron": _patron(valid=False, pin_ok=False)},
        (False, Reason.NOT_A_PATRON),
    ),
    (
        "order: closing soon before the card",
        {"patron": _patron(valid=False), "closes_at": NOW + timedelta(minutes=5)},
        (False, Reason.CLOSING_SOON),
    ),
]


@pytest.mark.parametrize(("case", "given", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rule(case: str, given: dict[str, Any], expected: tuple[bool, Reason]) -> None:
    assert _decide(**given) == expected, case


def test_every_reason_of_the_policy_is_in_the_table() -> None:
    """The reasons the desk gives (lockout, offline) are tested in tests/edge/runtime."""
    flow_only = {Reason.LOCKED_OUT, Reason.OFFLINE, Reason.OFFLINE_ADMITTED}
    covered = {expected[1] for _, _, expected in CASES}
    assert covered == set(Reason) - flow_only


def test_every_reason_has_danish_and_english_text() -> None:
    for reason in Reason:
        da, en = MESSAGES[reason]
        assert da and en and da != en, reason


def test_gate_says_check_the_card() -> None:
    assert gate(Mode.SELF_SERVICE, EntryRules(), now=NOW, occupancy=0, closes_at=None) is None


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        (date(2000, 2, 29), date(2018, 2, 28), 17),
        (date(2000, 2, 29), date(2018, 3, 1), 18),
        (date(2000, 1, 1), date(2000, 1, 1), 0),
    ],
)
def test_age_on(birth: date, day: date, age: int) -> None:
    assert age_on(birth, day) == age


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"modes": {"closed": "card"}}, "a card never admits in mode closed"),
        ({"modes": {"self_service": "face"}}, "card_and_pin"),
        ({"fee_limit": "-1"}, "greater than or equal to 0"),
        ({"min_age": 0}, "greater than or equal to 1"),
    ],
)
def test_rules_refused(rules: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EntryRules.model_validate(rules)
