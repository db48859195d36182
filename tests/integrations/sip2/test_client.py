"""The SIP2 client against pysip2's ACS server (a third-party implementation) over loopback:
answers with and without checksums, both patron requests, and every way the library system can
fail: a garbled answer, a server that closes mid-answer, a slow server, a login refused, TLS, a
restart, a full queue. Each failure is asserted by its reason."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from openbranch.edge.core.admission import LibrarySystemUnavailable, Patron
from openbranch.edge.core.config import Sip2Config
from openbranch.edge.core.registry import default_registry
from openbranch.integrations.sip2 import Sip2LibrarySystem, Sip2Unavailable
from tests.integrations.sip2.acs import (
    INSTITUTION,
    LOGIN_PASSWORD,
    LOGIN_USER,
    PATRONS,
    AcsProcess,
    Proxy,
    running,
    self_signed,
)
from tests.support.waiting import until

KAREN, LOST, DENIED, OVERDUE, FEES = PATRONS


@pytest.fixture(scope="module")
def acs() -> Iterator[AcsProcess]:
    with running(AcsProcess()) as server:
        yield server


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("sip2-secrets")
    (folder / "user").write_text(LOGIN_USER + "\n")
    (folder / "password").write_text(LOGIN_PASSWORD + "\n")
    (folder / "wrong").write_text("not-the-password\n")
    return {
        "login_user": {"file": str(folder / "user")},
        "login_password": {"file": str(folder / "password")},
        "wrong": {"file": str(folder / "wrong")},
    }


def config(port: int, secrets: dict[str, Any], **options: Any) -> Sip2Config:
    values = {
        "host": "127.0.0.1",
        "port": port,
        "institution_id": INSTITUTION,
        "login_user": secrets["login_user"],
        "login_password": secrets["login_password"],
        "timeout": 2.0,
        "reconnect_max": 1.0,
    }
    values.update(options)
    return Sip2Config.model_validate(values)


async def refused(system: Sip2LibrarySystem, card: str = KAREN, pin: str | None = "1234") -> str:
    with pytest.raises(LibrarySystemUnavailable) as caught:
        await system.lookup(card, pin)
    assert isinstance(caught.value, Sip2Unavailable)
    return caught.value.reason


@pytest.mark.parametrize("request_kind", ["patron_information", "patron_status"])
@pytest.mark.parametrize("checksums", [True, False])
def test_patrons_as_the_library_system_says(
    acs: AcsProcess,
    secrets: dict[str, Any],
    checksums: bool,
    request_kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> tuple[list[Patron], Proxy]:
        proxy = Proxy(acs.port)
        await proxy.start()
        cfg = config(proxy.port, secrets, checksums=checksums, request=request_kind)
        system = default_registry().library_system(cfg)  # built as the gateway builds it
        assert isinstance(system, Sip2LibrarySystem)
        try:
            asked = [
                (KAREN, "1234"),
                (KAREN, "9999"),
                (KAREN, None),
                ("2299999999999", "1234"),
                (LOST, "4321"),
                (DENIED, None),
                (OVERDUE, None),
                (FEES, None),
            ]
            patrons = [await system.lookup(card, pin) for card, pin in asked]
            assert system.connects == 1  # one connection for every lookup
            return patrons, proxy
        finally:
            await system.close()
            await proxy.stop()

    patrons, proxy = asyncio.run(main())
    right, wrong, no_pin, unknown, lost, denied, overdue, fees = patrons
    assert (right.valid, right.pin_ok) == (True, True)
    assert (wrong.valid, wrong.pin_ok) == (True, False)
    assert (no_pin.valid, no_pin.pin_ok) == (True, None)
    assert unknown.valid is False
    assert lost.card_lost and not lost.charge_denied
    assert denied.charge_denied and not denied.card_lost
    assert overdue.too_many_overdue
    assert fees.fee_amount == Decimal("150.00")
    assert right.fee_amount is None
    # the server answered in kind: checksummed frames when asked with them, else plain ones
    assert proxy.answers
    assert all((b"AZ" in answer) == checksums for answer in proxy.answers)
    # nothing personal in the log: no card number, PIN or name
    for secret in (KAREN, "1234", "9999", "Karen", LOGIN_PASSWORD):
        assert secret not in caplog.text


def test_a_garbled_answer_is_refused(acs: AcsProcess, secrets: dict[str, Any]) -> None:
    def flip(frame: bytes) -> bytes:  # one byte of the patron's answer changed on the wire
        return frame.replace(b"BLY", b"BLN") if frame.startswith(b"64") else frame

    def garbage(frame: bytes) -> bytes:
        return b"64 nonsense\r" if frame.startswith(b"64") else frame

    async def main() -> list[str]:
        reasons = []
        for fault, checksums in ((flip, True), (garbage, False)):
            proxy = Proxy(acs.port, fault=fault)
            await proxy.start()
            system = Sip2LibrarySystem(config(proxy.port, secrets, checksums=checksums))
            try:
                with pytest.raises(Sip2Unavailable) as caught:
                    await system.lookup(KAREN, "1234")
                reasons.append(f"{caught.value.reason}: {caught.value.detail}")
            finally:
                await system.close()
                await proxy.stop()
        return reasons

    flipped, garbled = asyncio.run(main())
    assert flipped.startswith("garbled: checksum") and "does not match" in flipped
    assert garbled.startswith("garbled: 64: fixed part cut short")


def test_a_server_that_closes_mid_answer(acs: AcsProcess, secrets: dict[str, Any]) -> None:
    async def main() -> tuple[Sip2Unavailable, int]:
        proxy = Proxy(acs.port, fault=lambda f: None if f.startswith(b"64") else f)
        await proxy.start()
        system = Sip2LibrarySystem(config(proxy.port, secrets))
        try:
            with pytest.raises(Sip2Unavailable) as caught:
                await system.lookup(KAREN, "1234")
            return caught.value, sum(a.startswith(b"64") for a in proxy.answers)
        finally:
            await system.close()
            await proxy.stop()

    failure, answers = asyncio.run(main())
    assert (failure.reason, failure.detail) == (
        "closed",
        "the server closed the connection mid-answer",
    )
    assert answers == 1  # a cut answer is not asked again (it may have been half read)


def test_a_slow_server_times_out(secrets: dict[str, Any]) -> None:
    async def main(acs: AcsProcess) -> tuple[Sip2Unavailable, float, list[tuple[bool, str]]]:
        changes: list[tuple[bool, str]] = []
        system = Sip2LibrarySystem(
            config(acs.port, secrets, timeout=0.3), on_change=lambda a, r: changes.append((a, r))
        )
        try:
            start = time.monotonic()
            with pytest.raises(Sip2Unavailable) as caught:
                await system.lookup(KAREN, "1234")
            took = time.monotonic() - start
            # the next lookup within the backoff fails at once, saying why
            assert await refused(system) == "backoff"
            assert system.problem is not None and "timeout" in system.problem
            return caught.value, took, changes
        finally:
            await system.close()

    with running(AcsProcess(delay=1.0)) as slow:
        failure, took, changes = asyncio.run(main(slow))
    assert failure.reason == "timeout"
    assert failure.detail == "no answer to 63 within 0.3 s"
    assert took < 0.9
    assert changes == [(False, "timeout")]


def test_login_refused(acs: AcsProcess, secrets: dict[str, Any]) -> None:
    async def main() -> Sip2Unavailable:
        system = Sip2LibrarySystem(config(acs.port, secrets, login_password=secrets["wrong"]))
        try:
            with pytest.raises(Sip2Unavailable) as caught:
                await system.lookup(KAREN, "1234")
            return caught.value
        finally:
            await system.close()

    failure = asyncio.run(main())
    assert failure.reason == "login_refused"
    assert "refused the terminal's login" in failure.detail


def test_tls_with_the_configured_ca(
    acs: AcsProcess, secrets: dict[str, Any], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)

    async def main() -> tuple[Patron, str]:
        proxy = Proxy(acs.port, tls=tls)
        await proxy.start()
        trusted = Sip2LibrarySystem(config(proxy.port, secrets, tls=True, tls_ca=str(cert)))
        # without the CA the system's store does not know the certificate: refused
        untrusted = Sip2LibrarySystem(config(proxy.port, secrets, tls=True))
        try:
            return await trusted.lookup(KAREN, "1234"), await refused(untrusted)
        finally:
            await trusted.close()
            await untrusted.close()
            await proxy.stop()

    patron, reason = asyncio.run(main())
    assert (patron.valid, patron.pin_ok) == (True, True)
    assert reason == "tls"


def test_reconnects_after_the_server_restarts(secrets: dict[str, Any]) -> None:
    acs = AcsProcess()
    acs.start()

    async def main() -> tuple[list[str], list[tuple[bool, str]], int]:
        changes: list[tuple[bool, str]] = []
        system = Sip2LibrarySystem(
            config(acs.port, secrets), on_change=lambda a, r: changes.append((a, r))
        )
        reasons = []
        try:
            assert (await system.lookup(KAREN, "1234")).valid
            acs.stop()
            reasons.append(await refused(system))  # stale connection retried, then refused
            reasons.append(await refused(system))  # within the backoff
            acs.start()  # the same port
            waited: set[str] = set()
            deadline = time.monotonic() + 5
            while True:
                try:
                    assert (await system.lookup(KAREN, "1234")).valid
                    break
                except Sip2Unavailable as exc:
                    waited.add(exc.reason)
                assert time.monotonic() < deadline, "no answer after the restart within 5 s"
                await asyncio.sleep(0.05)
            reasons.extend(sorted(waited))
            return reasons, changes, system.connects
        finally:
            await system.close()

    try:
        reasons, changes, connects = asyncio.run(main())
    finally:
        acs.stop()
    assert reasons[:2] == ["refused", "backoff"]
    assert set(reasons[2:]) <= {"backoff"}  # after the restart: at most waits for the next try
    assert changes == [(False, "refused"), (True, "answers")]
    assert connects == 2


def test_a_full_queue_refuses_at_once(secrets: dict[str, Any]) -> None:
    async def main(acs: AcsProcess) -> tuple[list[object], float]:
        proxy = Proxy(acs.port)
        await proxy.start()
        system = Sip2LibrarySystem(config(proxy.port, secrets, queue_size=2))
        try:
            first = asyncio.ensure_future(system.lookup(KAREN, "1234"))
            # login, status, then the lookup: 3 requests, the last one waiting at the server
            await until(lambda: proxy.requests == 3, what="the first lookup at the server")
            waiting = [asyncio.ensure_future(system.lookup(KAREN, "1234")) for _ in range(2)]
            await asyncio.sleep(0)  # the two are queued
            start = time.monotonic()
            reason = await refused(system)
            took = time.monotonic() - start
            answers = await asyncio.gather(first, *waiting)
            return [reason, *(p.valid for p in answers)], took
        finally:
            await system.close()
            await proxy.stop()

    with running(AcsProcess(delay=0.3)) as slow:
        outcome, took = asyncio.run(main(slow))
    assert outcome == ["queue_full", True, True, True]
    assert took < 0.1


def test_a_card_the_protocol_cannot_carry_is_not_sent(
    acs: AcsProcess, secrets: dict[str, Any]
) -> None:
    async def main() -> tuple[Patron, int]:
        proxy = Proxy(acs.port)
        await proxy.start()
        system = Sip2LibrarySystem(config(proxy.port, secrets))
        try:
            return await system.lookup(KAREN + "|AD1234", "1234"), proxy.requests
        finally:
            await system.close()
            await proxy.stop()

    patron, requests = asyncio.run(main())
    assert (patron.valid, patron.pin_ok) == (False, False)
    assert requests == 0  # not even a connection's login


def test_a_request_garbled_on_the_way_is_sent_again(
    acs: AcsProcess, secrets: dict[str, Any]
) -> None:
    """The server finds the checksum of the first patron request wrong and asks for a resend
    (96); the client sends it again and gets its answer."""
    spoiled: list[bytes] = []

    def spoil_once(frame: bytes) -> bytes:
        if frame.startswith(b"63") and not spoiled:
            spoiled.append(frame)
            return frame.replace(b"AA", b"AB", 1)  # checksum no longer matches
        return frame

    async def main() -> tuple[Patron, list[bytes]]:
        proxy = Proxy(acs.port, request_fault=spoil_once)
        await proxy.start()
        system = Sip2LibrarySystem(config(proxy.port, secrets))
        try:
            return await system.lookup(KAREN, "1234"), proxy.answers
        finally:
            await system.close()
            await proxy.stop()

    patron, answers = asyncio.run(main())
    assert (patron.valid, patron.pin_ok) == (True, True)
    assert len(spoiled) == 1
    assert [a[:2] for a in answers] == [b"94", b"98", b"96", b"64"]


def test_a_connection_closed_while_idle_is_opened_again(secrets: dict[str, Any]) -> None:
    """pysip2 closes a connection idle for 0.3 s; the next lookup is asked on a new one."""

    async def main(acs: AcsProcess) -> tuple[list[bool], int, str | None]:
        system = Sip2LibrarySystem(config(acs.port, secrets))
        try:
            first = await system.lookup(KAREN, "1234")
            await asyncio.sleep(0.6)  # the server's idle timeout passes (that is the test)
            second = await system.lookup(KAREN, "1234")
            return [first.valid, second.valid], system.connects, system.problem
        finally:
            await system.close()

    with running(AcsProcess(idle_timeout=0.3)) as idle:
        valid, connects, problem = asyncio.run(main(idle))
    assert valid == [True, True]
    assert connects == 2
    assert problem is None  # never unavailable
