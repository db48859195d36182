"""The SIP2 codec by tables: frames out checked by pysip2's codec (another implementation),
frames in from pysip2's encoder and by hand, every cut and garbled byte refused."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pysip2
import pytest

from openbranch.integrations.sip2 import codec
from openbranch.integrations.sip2.codec import Decoder, Frame, GarbledFrame, Sip2CodecError
from openbranch.integrations.sip2.patron import patron_from

AT = datetime(2026, 12, 4, 21, 30, 5, tzinfo=UTC)


def test_checksum_of_the_specs_example() -> None:
    """The SIP2 2.00 specification's own example frame (an item status answer) checks out."""
    frame = b"09N19980821    085721APCertification Terminal Location|AOCertification Institute ID|ABCheckInBook|ACTPWord|BIN|AY2AZ"
    assert codec.checksum(frame) == pysip2.calculate_checksum(frame)
    assert pysip2.verify_checksum(frame + codec.checksum(frame).encode())


@pytest.mark.parametrize("sequence", [None, 0, 7, 9])
def test_requests_read_by_pysip2(sequence: int | None) -> None:
    requests = [
        codec.login(user="gw", password="pw", location="Hovedbiblioteket"),
        codec.sc_status(),
        codec.patron(
            "63",
            institution="DK-761500",
            card="2200000000017",
            pin="1234",
            terminal_password="",
            at=AT,
        ),
        codec.patron(
            "23",
            institution="DK-761500",
            card="2200000000017",
            pin=None,
            terminal_password="t",
            at=AT,
        ),
    ]
    decoded = [
        pysip2.decode_message(codec.encode(r, sequence=sequence, encoding="cp850"))
        for r in requests
    ]
    assert [d.sequence_number for d in decoded] == [sequence] * 4
    assert [d.checksum is not None for d in decoded] == [sequence is not None] * 4
    login, status, info, patron = (d.message for d in decoded)
    assert isinstance(login, pysip2.LoginRequest)
    assert (login.login_user_id, login.login_password, login.location_code) == (
        "gw",
        "pw",
        "Hovedbiblioteket",
    )
    assert isinstance(status, pysip2.SCStatusRequest)
    assert status.protocol_version == "2.00"
    assert isinstance(info, pysip2.PatronInformationRequest)
    assert (info.patron_identifier, info.patron_password, info.transaction_date) == (
        "2200000000017",
        "1234",
        "20261204   Z213005",
    )
    assert isinstance(patron, pysip2.PatronStatusRequest)
    assert (patron.patron_password, patron.terminal_password) == ("", "t")  # AD is required


@pytest.mark.parametrize(
    ("card", "problem"),
    [
        ("123|AD0000", "delimiter"),
        ("123\r99", "delimiter"),
        ("1" * 256, "255 bytes"),
    ],
)
def test_a_value_that_would_become_another_field_is_refused(card: str, problem: str) -> None:
    request = codec.patron("23", institution="X", card=card, pin=None, terminal_password="", at=AT)
    with pytest.raises(Sip2CodecError, match=problem):
        codec.encode(request)


def _info(**fields: object) -> pysip2.PatronInformationResponse:
    base: dict[str, object] = {
        "patron_status": " " * 4 + "Y" + " " * 9,
        "language": "000",
        "transaction_date": "20261204    213005",
        "hold_items_count": "0000",
        "overdue_items_count": "0000",
        "charged_items_count": "0001",
        "fine_items_count": "0000",
        "recall_items_count": "0000",
        "unavailable_holds_count": "0000",
        "institution_id": "DK-761500",
        "patron_identifier": "2200000000017",
        "personal_name": "Karen Blixen",
        "valid_patron": "Y",
        "valid_patron_password": "N",
        "fee_amount": "12.50",
        "screen_message": ("Hej", "Karen"),
    }
    base.update(fields)
    return pysip2.PatronInformationResponse(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("checksum", [False, True])
def test_answers_written_by_pysip2(checksum: bool) -> None:
    wire = pysip2.encode_message(
        _info(), sequence_number=3 if checksum else None, checksum=checksum
    )
    frame = codec.decode(wire[:-1])
    assert frame.command == "64"
    assert frame.sequence == (3 if checksum else None)
    assert frame.get("AA") == "2200000000017"
    assert frame.all("AF") == ["Hej", "Karen"]
    patron = patron_from(frame, pin_sent=True)
    assert (patron.valid, patron.pin_ok, patron.card_lost, patron.charge_denied) == (
        True,
        False,
        True,
        False,
    )
    assert patron.fee_amount == Decimal("12.50")
    assert patron.screen_message == "Hej Karen"


def _framed(text: str, *, sequence: int | None = None) -> bytes:
    body = text.encode()
    if sequence is not None:
        body += f"AY{sequence}AZ".encode()
        body += codec.checksum(body).encode()
    return body


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"64" + b" " * 20, "fixed part cut short"),
        (b"12YYY", "unexpected command"),
        (b"94", "fixed part cut short"),
        (b"941AOabc", "without its code or terminator"),
        (b"941|", "without its code or terminator"),
        (b"941AY1AZFFFF", "does not match"),
        (b"941AY1AZ12G4", "not four hex digits"),
        (b"98\xff\xfe", "not utf-8"),
    ],
)
def test_garbled_answers(raw: bytes, problem: str) -> None:
    with pytest.raises(GarbledFrame, match=problem):
        codec.decode(raw)


def test_one_flipped_byte_in_a_checksummed_answer_is_garbled() -> None:
    good = _framed("941", sequence=4)
    assert codec.decode(good) == Frame("94", "1", (), 4)
    bad = good.replace(b"941", b"940")
    with pytest.raises(GarbledFrame, match="does not match"):
        codec.decode(bad)


def test_decoder_across_every_cut() -> None:
    wire = pysip2.encode_message(_info(), sequence_number=5, checksum=True)
    whole = codec.decode(wire[:-1])
    for cut in range(1, len(wire)):
        decoder = Decoder()
        assert decoder.feed(wire[:cut]) == []
        assert decoder.feed(wire[cut:]) == [whole]
        assert decoder.pending == 0


def test_decoder_two_frames_and_a_line_feed() -> None:
    decoder = Decoder()
    frames = decoder.feed(b"941\r\n940\r\n94")
    assert [f.fixed for f in frames] == ["1", "0"]
    assert decoder.feed(b"1\r") == [Frame("94", "1", ())]


def test_decoder_refuses_an_endless_frame() -> None:
    with pytest.raises(GarbledFrame, match="no CR within"):
        Decoder().feed(b"64" + b"x" * codec.MAX_FRAME)


FIXED_64 = " " * 14 + "000" + "20261204    213005" + "0000" * 6


@pytest.mark.parametrize(
    ("fields", "pin_sent", "expected"),
    [
        ("BLY|CQY|", True, {"valid": True, "pin_ok": True}),
        ("BLY|", True, {"valid": True, "pin_ok": False}),  # CQ absent: the PIN was not checked
        ("BLY|CQY|", False, {"valid": True, "pin_ok": None}),
        ("", False, {"valid": False, "pin_ok": None}),  # BL absent: not known as valid
        ("BLN|", False, {"valid": False}),
        ("BLY|PB20150601|PCBARN|", False, {"birth_date": date(2015, 6, 1), "category": "BARN"}),
        ("BLY|PB2015-06-01|", False, {"birth_date": date(2015, 6, 1)}),
        ("BLY|PB01.06.2015|", False, {"birth_date": None}),  # not guessed
        ("BLY|PB20150231|", False, {"birth_date": None}),
        ("BLY|BV0,00|", False, {"fee_amount": Decimal("0.00")}),
        ("BLY|BV|", False, {"fee_amount": None}),
    ],
)
def test_patron_from_answer(fields: str, pin_sent: bool, expected: dict[str, object]) -> None:
    patron = patron_from(codec.decode(("64" + FIXED_64 + fields).encode()), pin_sent=pin_sent)
    assert {key: getattr(patron, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("flag", "name"), [(0, "charge_denied"), (4, "card_lost"), (6, "too_many_overdue")]
)
def test_patron_status_flags(flag: int, name: str) -> None:
    status = "".join("Y" if i == flag else " " for i in range(14))
    patron = patron_from(
        codec.decode(f"24{status}00020261204    213005BLY|".encode()), pin_sent=False
    )
    flags = {n: getattr(patron, n) for n in ("charge_denied", "card_lost", "too_many_overdue")}
    assert flags == {n: n == name for n in flags}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("24" + "N" * 14 + "00020261204    213005", "not 14 'Y' or space"),
        ("64" + FIXED_64 + "BLY|BVmany|", "not a number"),
        ("64" + FIXED_64 + "BLY|BVNaN|", "not a number"),
        ("941", "expected a patron answer"),
    ],
)
def test_patron_answer_garbled(raw: str, problem: str) -> None:
    with pytest.raises(GarbledFrame, match=problem):
        patron_from(codec.decode(raw.encode()), pin_sent=False)
