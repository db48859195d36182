"""Self-service entry: what the library system says about a card, and who may come in.

The contract between the gateway and a library system (``LibrarySystem``, answered with a
``Patron``) lives here so the edge core never imports an integration: the SIP2 client in
``integrations/sip2`` implements it, and the entry flow in ``edge.runtime.entry`` uses it.

The branch's rules (``EntryConfig``, the gateway config's ``entry:`` section) are data here;
what they mean for one card at one instant is ``edge.hours.admission.decide`` (pure). A card
reader is a device whose source is also a ``CardReader``: it hands the gateway what was
presented (``Presentation``) and shows the answer (``ReaderMessage``); card numbers and PINs
never become readings.

Exceptions::

    LibrarySystemUnavailable    the library system did not answer (down, timeout, refused login)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openbranch.edge.core.schedule import Mode

__all__ = [
    "ENTRY_AUDIT",
    "LOCKOUT_AUDIT",
    "MESSAGES",
    "PERSONAL_AUDIT_KINDS",
    "CardCheck",
    "CardReader",
    "Decision",
    "EntryConfig",
    "EntryRules",
    "LibrarySystem",
    "LibrarySystemUnavailable",
    "LockoutRules",
    "OfflineAllowList",
    "OfflinePolicy",
    "Patron",
    "Presentation",
    "ReaderLink",
    "ReaderMessage",
    "Reason",
    "TailgatingRules",
]

ENTRY_AUDIT = "entry"  # the audit kind of an entry decision: the card's pseudonym, the verdict
LOCKOUT_AUDIT = "entry_lockout"  # the audit kind of a card locked after wrong PINs (pseudonym)
# Audit kinds that carry a card's pseudonym: kept no longer than the entry retention, in the
# gateway's store (edge.runtime.allowlist) and in InfluxDB (provisioning.purge)
PERSONAL_AUDIT_KINDS = (ENTRY_AUDIT, LOCKOUT_AUDIT)


@dataclass(frozen=True, kw_only=True)
class Patron:
    """What the library system says about a card (SIP2 patron information, 64).

    ``pin_ok`` is None when no PIN was checked. ``screen_message`` is for the reader only and
    is never logged.
    """

    valid: bool  # SIP2 BL (valid patron)
    pin_ok: bool | None  # SIP2 CQ (valid patron password); None when no PIN was checked
    birth_date: date | None = None  # SIP2 PB where given
    category: str | None = None  # SIP2 PC (patron type)
    charge_denied: bool = False  # patron status char 0
    card_lost: bool = False  # patron status char 4
    too_many_overdue: bool = False  # patron status char 6
    fee_amount: Decimal | None = None  # BV
    screen_message: str | None = None  # AF, never logged

    def __repr__(self) -> str:
        # the screen message may name the patron: keep it out of any log line
        return (
            f"Patron(valid={self.valid}, pin_ok={self.pin_ok}, category={self.category!r}, "
            f"charge_denied={self.charge_denied}, card_lost={self.card_lost}, "
            f"too_many_overdue={self.too_many_overdue}, fee_amount={self.fee_amount})"
        )


class LibrarySystemUnavailable(Exception):
    """The library system did not answer: connection refused or lost, timeout, login refused."""


class LibrarySystem(Protocol):
    """A library system that says whether a card (and PIN) belongs to a patron in good standing."""

    async def lookup(self, card: str, pin: str | None) -> Patron:
        """The patron behind ``card``; raises ``LibrarySystemUnavailable`` when it cannot say."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class OfflineAllowList(Protocol):
    """Cards admitted online lately, kept as keyed hashes only (``integrations``/privacy side):
    what the offline policy ``recently_admitted`` asks when the library system is down."""

    def remember(self, card: str) -> None:
        """``card`` was just admitted online."""
        ...

    def admit_offline(self, card: str) -> bool:
        """Whether ``card`` was admitted online within the list's window."""
        ...

    def forget(self, card: str) -> None:
        """The library system refused ``card`` online (lost, blocked, not a patron)."""
        ...


# --- decisions ------------------------------------------------------------------------------


class Reason(StrEnum):
    """Why a card was admitted or refused; the value is the audit's and the reader's code."""

    ADMITTED = "admitted"  # every rule passed
    STAFFED = "staffed"  # staffed hours: the door is free, no check
    OFFLINE_ADMITTED = "offline_admitted"  # library system down; admitted online lately
    CLOSED = "closed"  # closed or maintenance: nobody
    EMERGENCY = "emergency"  # emergency: nobody comes in
    NO_CARD_ENTRY = "no_card_entry"  # this mode does not admit with a card
    CLOSING_SOON = "closing_soon"  # the last minutes before closing
    FULL = "full"  # the occupancy cap is reached
    NOT_A_PATRON = "not_a_patron"  # the library system does not know the card
    PIN_REQUIRED = "pin_required"  # no PIN entered where one is needed
    WRONG_PIN = "wrong_pin"
    PIN_NOT_CHECKED = "pin_not_checked"  # the library system did not say whether it fits
    CARD_LOST = "card_lost"
    CHARGE_DENIED = "charge_denied"
    TOO_MANY_OVERDUE = "too_many_overdue"
    FEES = "fees"  # fees above the limit
    UNDER_AGE = "under_age"
    AGE_UNKNOWN = "age_unknown"  # a minimum age applies, the library system gives none
    CATEGORY = "category"  # the patron category is not admitted
    LOCKED_OUT = "locked_out"  # too many wrong PINs on this card or reader
    OFFLINE = "offline"  # library system down, refused by the offline policy


#: What the reader shows, per reason: (Danish, English).
MESSAGES: dict[Reason, tuple[str, str]] = {
    Reason.ADMITTED: ("Velkommen", "Welcome"),
    Reason.STAFFED: ("Velkommen, døren er åben", "Welcome, the door is open"),
    Reason.OFFLINE_ADMITTED: ("Velkommen", "Welcome"),
    Reason.CLOSED: ("Biblioteket er lukket", "The library is closed"),
    Reason.EMERGENCY: ("Ingen adgang lige nu", "No entry right now"),
    Reason.NO_CARD_ENTRY: ("Ingen adgang med kort nu", "No card entry at this time"),
    Reason.CLOSING_SOON: ("Biblioteket lukker snart", "The library closes soon"),
    Reason.FULL: ("Biblioteket er fuldt, prøv igen senere", "The library is full, try later"),
    Reason.NOT_A_PATRON: ("Kortet er ikke gyldigt", "The card is not valid"),
    Reason.PIN_REQUIRED: ("Indtast din pinkode", "Enter your PIN"),
    Reason.WRONG_PIN: ("Forkert pinkode", "Wrong PIN"),
    Reason.PIN_NOT_CHECKED: ("Pinkoden kunne ikke kontrolleres", "The PIN could not be checked"),
    Reason.CARD_LOST: ("Kortet er meldt bortkommet", "The card is reported lost"),
    Reason.CHARGE_DENIED: ("Kontakt biblioteket", "Please contact the library"),
    Reason.TOO_MANY_OVERDUE: ("Du har for mange overskredne lån", "Too many overdue loans"),
    Reason.FEES: ("Du har ubetalte gebyrer", "You have unpaid fees"),
    Reason.UNDER_AGE: ("Du er under aldersgrænsen", "You are under the age limit"),
    Reason.AGE_UNKNOWN: ("Kontakt biblioteket", "Please contact the library"),
    Reason.CATEGORY: ("Dit kort giver ikke adgang nu", "Your card gives no entry now"),
    Reason.LOCKED_OUT: ("For mange forsøg, vent lidt", "Too many attempts, please wait"),
    Reason.OFFLINE: ("Adgang er ikke mulig lige nu", "Entry is not possible right now"),
}


@dataclass(frozen=True, slots=True)
class Decision:
    """Admit or refuse, and why."""

    admit: bool
    reason: Reason

    @property
    def text(self) -> tuple[str, str]:
        """What the reader shows: (Danish, English)."""
        return MESSAGES[self.reason]


# --- rules (the gateway config's ``entry:``) -------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


CardCheck = Literal["card", "card_and_pin"]
_SELF_SERVICE_WITH_PIN: dict[Mode, CardCheck] = {Mode.SELF_SERVICE: "card_and_pin"}


class EntryRules(_Model):
    """Who a card admits. Staffed hours: the door is free; closed, maintenance, emergency:
    nobody, whatever is written here."""

    modes: dict[Mode, CardCheck] = Field(
        default_factory=_SELF_SERVICE_WITH_PIN.copy,
        description="the modes in which a card admits, and whether a PIN is needed",
    )
    min_age: int | None = Field(default=None, ge=1, le=120, description="years")
    under_age_categories: list[str] = Field(
        default_factory=list,
        description="patron categories (SIP2 PC) that are under the minimum age, for library "
        "systems that give no birth date",
    )
    unknown_age: Literal["admit", "refuse"] = Field(
        default="refuse",
        description="with min_age: a patron with neither a birth date nor an under-age category",
    )
    categories_allowed: list[str] = Field(
        default_factory=list, description="only these patron categories (empty: every one)"
    )
    categories_refused: list[str] = Field(default_factory=list)
    refuse_charge_denied: bool = True
    refuse_card_lost: bool = True
    refuse_too_many_overdue: bool = False
    fee_limit: Decimal | None = Field(
        default=None, ge=0, description="refuse fees above this amount (none: fees never refuse)"
    )
    last_entry_minutes: int = Field(
        default=15, ge=0, le=240, description="no admission this many minutes before closing"
    )
    occupancy_cap: int | None = Field(
        default=None, ge=1, description="people inside at most (default: closing.occupancy_cap)"
    )

    @model_validator(mode="after")
    def _modes_that_can_admit(self) -> EntryRules:
        for mode in self.modes:
            if mode not in (Mode.SELF_SERVICE, Mode.STAFFED):
                raise ValueError(f"a card never admits in mode {mode.value}")
        return self


class OfflinePolicy(_Model):
    """When the library system does not answer: refuse every card (the default), or admit the
    cards admitted online within ``days``."""

    policy: Literal["refuse_all", "recently_admitted"] = "refuse_all"
    days: int = Field(default=14, ge=1, le=90, description="with recently_admitted")


class LockoutRules(_Model):
    """Wrong PINs: ``attempts`` within ``within_s`` on one card, or on one reader, lock that
    card (or reader) for ``lock_s``."""

    attempts: int = Field(default=3, ge=1, le=20)
    reader_attempts: int = Field(default=10, ge=1, le=200)
    within_s: float = Field(default=900.0, gt=0, le=86400)
    lock_s: float = Field(default=900.0, gt=0, le=86400)


class TailgatingRules(_Model):
    """People counted in at a door beyond the admissions there, within ``window_s``."""

    window_s: float = Field(default=30.0, gt=0, le=3600)
    tolerance: int = Field(default=0, ge=0, le=20, description="extra people let pass")
    severity: Literal["info", "warning", "critical"] = "warning"


class ReaderLink(_Model):
    """One card reader: the door its admissions unlock, and the people counter there.

    An admission pulses ``door.unlock_point``: ``unlock_value`` for ``EntryConfig.unlock_s``,
    then ``relock_value`` (a Moxa ioLogik E1214's ``lock_relay``: true, then false; a
    Danalock's ``locked``: false, then true). The point must not be an actuator of the
    opening hours (those hold a state; this is a pulse)."""

    reader: str = Field(description="the reader device's id")
    door: str = Field(description="the door device's id")
    unlock_point: str = Field(description="the door's point that releases the lock")
    unlock_value: bool | int | float | str = True
    relock_value: bool | int | float | str = False
    counter: str | None = Field(default=None, description="people counter at this door")


class EntryConfig(_Model):
    """Self-service entry: readers, rules, the offline policy, lockout and tailgating."""

    readers: list[ReaderLink] = Field(min_length=1)
    rules: EntryRules = Field(default_factory=EntryRules)
    offline: OfflinePolicy = Field(default_factory=OfflinePolicy)
    lockout: LockoutRules = Field(default_factory=LockoutRules)
    tailgating: TailgatingRules = Field(default_factory=TailgatingRules)
    unlock_s: float = Field(default=5.0, gt=0, le=60, description="the unlock pulse")
    lookup_timeout_s: float = Field(default=3.0, gt=0, le=30)
    queue: int = Field(default=32, ge=1, le=1000, description="presentations waiting at most")
    retention_days: int = Field(
        default=30, ge=1, le=3650, description="entry decisions kept in the local store"
    )


# --- readers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Presentation:
    """A card held to a reader, with the PIN typed (if any). Never logged: ``repr`` hides it."""

    reader: str
    card: str = field(repr=False)
    pin: str | None = field(default=None, repr=False)
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReaderMessage:
    """What a reader shows after a presentation."""

    admit: bool
    reason: Reason
    da: str
    en: str
    at: datetime

    @classmethod
    def of(cls, decision: Decision, at: datetime) -> ReaderMessage:
        da, en = decision.text
        return cls(admit=decision.admit, reason=decision.reason, da=da, en=en, at=at)


@runtime_checkable
class CardReader(Protocol):
    """A device source that is a card reader (+ PIN pad)."""

    async def presentations(self, deliver: Callable[[Presentation], None]) -> None:
        """Hand every presentation to ``deliver`` until cancelled."""
        ...

    def show(self, message: ReaderMessage) -> None:
        """Tell the reader the answer (its display, its state topic)."""
        ...
