"""The demo's patrons at the card reader in self-service hours.

Visitors the scenario brings to the door (``BranchScenario.at_door``) present a card and PIN
at the reader: the reader's simulated device publishes the presentation on MQTT, as the real
reader does, and the gateway's entry desk asks the demo's library system (``DemoAcs``, SIP2 on
loopback). An admitted visitor walks in through the door's people counter; a refused one
leaves. The evening has its story, once each, from 17:00 local in self-service hours:

- 17:30 a card reported lost is refused;
- 18:00 a twelve-year-old is refused (under the branch's minimum age);
- 18:30 a patron types a wrong PIN three times, then the right one: locked out;
- 19:00 the next admitted patron lets a second person in behind them (tailgating);
- 19:30 to 20:15 the library system is down (refused by the offline policy), then back;
- 21:15 a patron whose borrowing is blocked (charge privileges denied) is refused.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from openbranch.edge.core.admission import Decision
from openbranch.edge.demo.acs import DEMO_PATRONS, DemoAcs
from openbranch.edge.demo.scenario import BranchScenario

__all__ = ["DemoPatrons"]

REGULARS = [
    card for card, p in DEMO_PATRONS.items() if p.status.strip() == "" and p.category == "voksen"
]
LOST, CHILD, BLOCKED = "4000000000078", "4000000000086", "4000000000094"
OFFLINE_FROM, OFFLINE_UNTIL = time(19, 30), time(20, 15)


@runtime_checkable
class _Publishes(Protocol):
    """A simulated MQTT device that can publish a message of its own (the reader)."""

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None: ...


@dataclass(slots=True)
class DemoPatrons:
    reader: object  # the reader's simulated device
    topic: str  # where the reader publishes presentations
    scenario: BranchScenario
    acs: DemoAcs
    timezone: ZoneInfo
    say: Callable[[str], None] = lambda _line: None
    seed: int = 11
    done: set[str] = field(default_factory=set)  # the story's events that happened
    _rng: random.Random = field(init=False)
    _tailgate: bool = False  # the next admission lets two in

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def on_decision(self, _reader: str, decision: Decision) -> None:
        """The entry desk's answer: an admitted visitor walks in (two, once: a tailgater)."""
        if decision.admit:
            self.scenario.walk_in(2 if self._tailgate else 1)
            self._tailgate = False

    async def step(self, now: datetime) -> None:
        """Present the cards of the visitors at the door, and play the evening's story."""
        local = now.astimezone(self.timezone).time()
        await self._library(local)
        if self.scenario.at_door <= 0:
            return
        evening = local >= time(17, 0)
        for name, at, cards in (
            ("lost", time(17, 30), [(LOST, "7777")]),
            ("child", time(18, 0), [(CHILD, "8888")]),
            ("pin", time(18, 30), [(REGULARS[0], "0000")] * 3 + [(REGULARS[0], "1111")]),
        ):
            if evening and local >= at and name not in self.done:
                self.done.add(name)
                self.scenario.at_door -= 1
                for card, pin in cards:
                    self._present(card, pin)
        if evening and local >= time(19, 0) and "tailgater" not in self.done:
            self.done.add("tailgater")
            self._tailgate = True
        if evening and local >= time(21, 15) and "blocked" not in self.done:
            self.done.add("blocked")
            self.scenario.at_door -= 1
            self._present(BLOCKED, "9999")
        while self.scenario.at_door > 0:
            self.scenario.at_door -= 1
            card = self._rng.choice(REGULARS)
            self._present(card, DEMO_PATRONS[card].pin)

    async def _library(self, local: time) -> None:
        down = OFFLINE_FROM <= local < OFFLINE_UNTIL
        if down and self.acs.online and "offline" not in self.done:
            self.done.add("offline")
            await self.acs.stop()
            self.say(f"  {local:%H:%M}  {'simulated outage':<28} the library system stops")
        elif not down and not self.acs.online:
            await self.acs.start()
            self.say(f"  {local:%H:%M}  {'simulated outage':<28} the library system is back")

    def _present(self, card: str, pin: str) -> None:
        if isinstance(self.reader, _Publishes):
            body = json.dumps({"card": card, "pin": pin}).encode()
            self.reader.publish_raw(self.topic, body)
