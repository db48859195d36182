"""What a patron status (24) or patron information (64) answer says about a card (pure).

Fail closed: a patron is valid only when the answer says ``BL`` Y, and a PIN that was sent is
right only when it says ``CQ`` Y (a library system that does not report ``CQ`` did not check
it). ``PB`` (birth date) and ``PC`` (patron type) are the extension fields that Danish library
systems send; a birth date in another form is left out (None), never guessed.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

from openbranch.edge.core.admission import Patron
from openbranch.integrations.sip2.codec import Frame, GarbledFrame

__all__ = ["STATUS_FLAGS", "patron_from"]

#: the patron status flags the admission rules use, by their place in the 14 characters
STATUS_FLAGS = {"charge_denied": 0, "card_lost": 4, "too_many_overdue": 6}

_BIRTH = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def _birth_date(text: str | None) -> date | None:
    match = _BIRTH.match(text.strip()) if text else None
    if match is None:
        return None
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def _fee(text: str | None) -> Decimal | None:
    if text is None or not text.strip():
        return None
    try:
        fee = Decimal(text.strip().replace(",", "."))
    except InvalidOperation:
        raise GarbledFrame(f"fee amount (BV) {text!r} is not a number") from None
    if not fee.is_finite():
        raise GarbledFrame(f"fee amount (BV) {text!r} is not a number")
    return fee


def patron_from(frame: Frame, *, pin_sent: bool) -> Patron:
    """The ``Patron`` in a 24 or 64 answer; GarbledFrame when its status is not 14 Y/space."""
    if frame.command not in ("24", "64"):
        raise GarbledFrame(f"expected a patron answer (24 or 64), got {frame.command}")
    status = frame.fixed[:14]
    if len(status) != 14 or set(status) - {"Y", " "}:
        raise GarbledFrame(f"patron status {status!r} is not 14 'Y' or space")
    screen = " ".join(frame.all("AF")).strip()
    return Patron(
        valid=frame.get("BL") == "Y",
        pin_ok=(frame.get("CQ") == "Y") if pin_sent else None,
        birth_date=_birth_date(frame.get("PB")),
        category=(frame.get("PC") or "").strip() or None,
        fee_amount=_fee(frame.get("BV")),
        screen_message=screen or None,
        charge_denied=status[STATUS_FLAGS["charge_denied"]] == "Y",
        card_lost=status[STATUS_FLAGS["card_lost"]] == "Y",
        too_many_overdue=status[STATUS_FLAGS["too_many_overdue"]] == "Y",
    )
