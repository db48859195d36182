"""Reading a DPL CMS site's opening hours over HTTP (the standard library's ``urllib``).

``fetch(url, branch_id, start, end, timeout)`` asks ``GET {url}/api/v1/opening_hours?
_format=json&branch_id=..&from_date=..&to_date=..`` and returns the validated instances. Every
failure is a ``HoursSourceError`` whose message starts with the address asked, and says what
went wrong where: unreachable (the reason), an HTTP status, an answer that is not JSON (line and
column), or an instance that is not as documented (``[3].start_time: ...``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import date

from pydantic import ValidationError

from openbranch.edge.core.imported import HoursSourceError
from openbranch.edge.core.yamlsource import format_loc
from openbranch.integrations.dplcms.models import Instance, instances

__all__ = ["MAX_ANSWER", "PATH", "address", "fetch"]

PATH = "/api/v1/opening_hours"
MAX_ANSWER = 5_000_000  # bytes; a branch's year of hours is ~300 kB


def address(url: str, branch_id: int, start: date, end: date) -> str:
    query = urllib.parse.urlencode(
        {
            "_format": "json",
            "branch_id": branch_id,
            "from_date": start.isoformat(),
            "to_date": end.isoformat(),
        }
    )
    return f"{url.rstrip('/')}{PATH}?{query}"


def fetch(url: str, branch_id: int, start: date, end: date, *, timeout: float) -> list[Instance]:
    where = address(url, branch_id, start, end)
    request = urllib.request.Request(  # noqa: S310 - WebsiteHours.url is http(s) only
        where, headers={"Accept": "application/json", "User-Agent": "openbranch"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            body = answer.read(MAX_ANSWER + 1)
    except urllib.error.HTTPError as exc:
        raise HoursSourceError(f"{where}: answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise HoursSourceError(f"{where}: unreachable: {exc.reason}") from exc
    except TimeoutError as exc:
        raise HoursSourceError(f"{where}: unreachable: no answer within {timeout:g} s") from exc
    except OSError as exc:
        raise HoursSourceError(f"{where}: unreachable: {exc}") from exc
    if len(body) > MAX_ANSWER:
        raise HoursSourceError(f"{where}: the answer is larger than {MAX_ANSWER:,} bytes")
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise HoursSourceError(f"{where}: the answer is not UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise HoursSourceError(
            f"{where}: the answer is not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    try:
        return instances.validate_python(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        loc = format_loc(tuple(first["loc"])) or "the answer"
        raise HoursSourceError(
            f"{where}: not DPL CMS's documented opening hours: {loc}: {first['msg']}{more}"
        ) from exc
