"""DPL CMS (Danish Public Libraries' shared CMS): a branch's opening hours from the library's
website, as an ``openbranch.hours_sources`` plug-in (``fetch_days``) for `openbranch hours`.

README.md says how to set it up; ``models`` is the API's documented shape, ``client`` the
HTTP request, ``mapping`` categories to modes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from openbranch.edge.core.imported import WebsiteAnswer, WebsiteHours
from openbranch.integrations.dplcms.client import address, fetch
from openbranch.integrations.dplcms.mapping import days_of
from openbranch.integrations.dplcms.models import Instance

__all__ = ["Instance", "fetch_days"]


def fetch_days(website: WebsiteHours, start: date, end: date) -> WebsiteAnswer:
    """The website's hours for the local days ``start``..``end``, in the calendar's words;
    ``HoursSourceError`` (nothing returned) when it cannot be read or mapped."""
    where = address(website.url, website.branch_id, start, end)
    found = fetch(website.url, website.branch_id, start, end, timeout=website.timeout)
    return WebsiteAnswer(
        source=where,
        branch_id=website.branch_id,
        fetched_at=datetime.now(UTC),
        start=start,
        end=end,
        days=days_of(found, website, start, end, where),
    )
