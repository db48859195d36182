"""How Mosquitto 2.0 reads its config and ACL files, line by line, for tests that check what a
rendered file *means* to the broker (a real Mosquitto only says whether it loads).

Ported from mosquitto's src/conf.c (config lines) and src/security_default.c
(``aclfile__parse``): a line is read up to its newline, trailing blanks (C ``isspace``) are
cut, a line starting with ``#`` is a comment; the ACL's ``topic [read|write|readwrite|deny]
TOPIC`` splits on single spaces and trims the topic's blanks at both ends.
"""

from __future__ import annotations

__all__ = ["acl_entries", "directives"]

_C_SPACE = " \t\n\v\f\r"


def _lines(text: str) -> list[str]:
    """fgets: lines end at b'\\n' only; a NUL ends the C string."""
    out = []
    for raw in text.split("\n"):
        line = raw.split("\0", 1)[0].rstrip(_C_SPACE)
        out.append(line)
    return out


def directives(text: str) -> list[tuple[str, str]]:
    """(directive, rest of the line) for every line Mosquitto's config reader acts on."""
    out = []
    for line in _lines(text):
        stripped = line.lstrip(_C_SPACE)
        if not stripped or stripped.startswith("#"):
            continue
        key, _, rest = stripped.partition(" ")
        out.append((key, rest.strip(_C_SPACE)))
    return out


def acl_entries(text: str) -> list[tuple[str | None, str, str]]:
    """(user or None, access, topic) for every ``topic`` line; raises ValueError where
    Mosquitto refuses to start."""
    user: str | None = None
    out: list[tuple[str | None, str, str]] = []
    for line in _lines(text):
        if line.startswith("#"):
            continue
        tokens = [t for t in line.split(" ") if t]
        if not tokens:
            continue
        if tokens[0] == "user":
            rest = line.split("user", 1)[1].strip(_C_SPACE)
            if not rest:
                raise ValueError("missing username")
            user = rest
        elif tokens[0] == "topic":
            after = line.split("topic", 1)[1].lstrip(" ")
            access, _, topic = after.partition(" ")
            topic = topic.lstrip(" ").strip(_C_SPACE)
            if not topic:
                access, topic = "readwrite", access
            if access not in ("read", "write", "readwrite", "deny"):
                raise ValueError(f"invalid access {access!r}")
            out.append((user, access, topic))
        else:
            raise ValueError(f"invalid line {line!r}")
    return out
