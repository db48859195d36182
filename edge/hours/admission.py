"""The admission policy: may this card come in now? Pure, and table-tested.

``gate`` is what the branch says before any card is looked at (closed, staffed, the last
minutes before closing, the occupancy cap): a decision, or None when the card must be
checked. ``decide`` is ``gate`` and then what the library system said about the patron, in
this order (the first rule that refuses gives the reason)::

    mode          closed, maintenance -> closed; emergency -> emergency; staffed -> staffed
                  (the door is free); a mode without card entry -> no_card_entry
    time          within rules.last_entry_minutes before closing -> closing_soon
    occupancy     people inside >= the cap -> full
    patron        not valid -> not_a_patron
    PIN           card_and_pin: none typed -> pin_required; wrong -> wrong_pin; the library
                  system did not check it -> pin_not_checked
    blocks        card lost, charge denied, too many overdue (each switchable), fees above
                  the limit
    age           below min_age from the birth date, or an under-age category; neither known
                  -> age_unknown unless rules.unknown_age is admit
    category      not in categories_allowed (when given), or in categories_refused
    otherwise     admitted

The branch's closing is passed in (``closes_at``: when the current mode ends, from the
calendar), so the policy needs no clock and no calendar.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from openbranch.edge.core.admission import Decision, EntryRules, Patron, Reason
from openbranch.edge.core.schedule import Mode

__all__ = ["age_on", "decide", "gate"]


def age_on(birth: date, day: date) -> int:
    """Whole years from ``birth`` to ``day`` (born 29 February: a year older on 1 March)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


_NOBODY = {
    Mode.CLOSED: Reason.CLOSED,
    Mode.MAINTENANCE: Reason.CLOSED,
    Mode.EMERGENCY: Reason.EMERGENCY,
}


def gate(
    mode: Mode,
    rules: EntryRules,
    *,
    now: datetime,
    occupancy: int | None,
    closes_at: datetime | None,
) -> Decision | None:
    """The branch's answer before any card is looked at; None: check the card."""
    reason: Reason | None = None
    if mode in _NOBODY:
        reason = _NOBODY[mode]
    elif mode not in rules.modes:
        if mode is Mode.STAFFED:
            return Decision(admit=True, reason=Reason.STAFFED)
        reason = Reason.NO_CARD_ENTRY
    elif closes_at is not None and closes_at - now <= timedelta(minutes=rules.last_entry_minutes):
        reason = Reason.CLOSING_SOON
    elif (
        rules.occupancy_cap is not None
        and occupancy is not None
        and occupancy >= rules.occupancy_cap
    ):
        reason = Reason.FULL
    return None if reason is None else Decision(admit=False, reason=reason)


def decide(
    mode: Mode,
    patron: Patron,
    rules: EntryRules,
    *,
    now: datetime,
    today: date,
    occupancy: int | None,
    closes_at: datetime | None,
    pin_given: bool,
) -> Decision:
    """Admit or refuse ``patron`` (see the module doc for the order of the rules). ``today``
    is the branch's local date (ages count in it); ``pin_given``: a PIN was typed."""
    early = gate(mode, rules, now=now, occupancy=occupancy, closes_at=closes_at)
    if early is not None:
        return early
    refused = (
        (None if patron.valid else Reason.NOT_A_PATRON)
        or _pin(rules.modes[mode] == "card_and_pin", patron, pin_given=pin_given)
        or _blocked(patron, rules)
        or _age(patron, rules, today)
        or _category(patron, rules)
    )
    if refused is not None:
        return Decision(admit=False, reason=refused)
    return Decision(admit=True, reason=Reason.ADMITTED)


def _pin(needed: bool, patron: Patron, *, pin_given: bool) -> Reason | None:
    if not needed:
        return None
    if not pin_given:
        return Reason.PIN_REQUIRED
    if patron.pin_ok is None:
        return Reason.PIN_NOT_CHECKED
    return None if patron.pin_ok else Reason.WRONG_PIN


def _blocked(patron: Patron, rules: EntryRules) -> Reason | None:
    fees = patron.fee_amount
    blocks = (
        (rules.refuse_card_lost and patron.card_lost, Reason.CARD_LOST),
        (rules.refuse_charge_denied and patron.charge_denied, Reason.CHARGE_DENIED),
        (rules.refuse_too_many_overdue and patron.too_many_overdue, Reason.TOO_MANY_OVERDUE),
        (rules.fee_limit is not None and fees is not None and fees > rules.fee_limit, Reason.FEES),
    )
    return next((reason for blocked, reason in blocks if blocked), None)


def _age(patron: Patron, rules: EntryRules, today: date) -> Reason | None:
    if rules.min_age is None:
        return None
    if patron.birth_date is not None:
        young = age_on(patron.birth_date, today) < rules.min_age
    elif patron.category is not None and patron.category in rules.under_age_categories:
        young = True
    else:
        return Reason.AGE_UNKNOWN if rules.unknown_age == "refuse" else None
    return Reason.UNDER_AGE if young else None


def _category(patron: Patron, rules: EntryRules) -> Reason | None:
    if rules.categories_allowed and patron.category not in rules.categories_allowed:
        return Reason.CATEGORY
    if patron.category is not None and patron.category in rules.categories_refused:
        return Reason.CATEGORY
    return None
