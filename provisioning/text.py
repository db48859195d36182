"""What text may go into a rendered file: shared by the inventory (which refuses, with a located
error) and the writers (which escape for their format, or refuse what their format cannot hold).

Free text is one line of printable characters: no control characters (C0, DEL, C1), no format
controls (bidirectional overrides, zero-width characters), no surrogates or private-use
characters, no line or paragraph separators, no Unicode non-characters (U+FDD0..U+FDEF and
U+xxFFFE/U+xxFFFF, which Mosquitto refuses in a topic as malformed UTF-8). A literal topic
is one MQTT topic: not empty, no wildcard, no blanks at either end (Mosquitto's ACL reader
trims them), at most 65,535 bytes.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

__all__ = [
    "REFUSED_CATEGORIES",
    "comment",
    "control_problem",
    "host_problem",
    "topic_problem",
]

#: Unicode categories refused in free text: Cc control, Cf format, Cs surrogate, Co private
#: use, Zl line separator, Zp paragraph separator.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})

_HOST = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_MQTT_TOPIC_BYTES = 65535


def _noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


def _refused(char: str) -> bool:
    return unicodedata.category(char) in REFUSED_CATEGORIES or _noncharacter(ord(char))


def control_problem(text: str) -> str | None:
    """Why ``text`` is not one line of printable text, or None. Never echoes the text."""
    for char in text:
        if _refused(char):
            kind = "non-character" if _noncharacter(ord(char)) else "control character"
            return f"{kind} U+{ord(char):04X} is not allowed (one line of text)"
    return None


def topic_problem(topic: str, *, dollar: bool = True) -> str | None:
    """Why ``topic`` is not one literal MQTT topic (``dollar``: may start with ``$``)."""
    wildcard = next((w for w in ("#", "+") if w in topic), None)
    checks = [
        (not topic, "a topic is not empty"),
        (wildcard is not None, f"{wildcard!r} is a wildcard: give the literal topic"),
        (topic != topic.strip(" "), "a topic does not start or end with blanks"),
        (
            not dollar and topic.startswith("$"),
            "a topic here does not start with '$' (the broker's own topics)",
        ),
        (
            len(topic.encode("utf-8", "surrogatepass")) > _MQTT_TOPIC_BYTES,
            f"longer than MQTT's {_MQTT_TOPIC_BYTES:,} bytes",
        ),
    ]
    return control_problem(topic) or next((message for bad, message in checks if bad), None)


def host_problem(host: str) -> str | None:
    """Why ``host`` is neither a DNS host name nor an IP address, or None."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if _HOST.fullmatch(host) is None:
            return f"{host!r} is not a host name or an IP address"
    return None


def comment(text: str) -> str:
    """``text`` for a one-line comment: refused characters written as ``\\uXXXX``."""
    return "".join(f"\\u{ord(c):04x}" if _refused(c) else c for c in text)
