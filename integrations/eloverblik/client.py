"""A small client of Eloverblik's customer API (DataHub): a refresh token buys a data access
token, the access token buys hourly time series.

- ``GET {url}/api/token`` with ``Authorization: Bearer <refresh token>`` answers
  ``{"result": "<data access token>"}`` (the access token lasts about a day);
- ``POST {url}/api/meterdata/gettimeseries/{from}/{to}/Hour`` with
  ``{"meteringPoints": {"meteringPoint": ["<id>", ...]}}`` and the access token answers the
  document that ``timeseries`` reads; ``from`` and ``to`` are dates, ``to`` excluded; ten
  metering points a request at most.

An access token that expired (401 on a data call) is renewed once and the call repeated; a
refresh token that is refused (401 or 403 on ``/api/token``) is ``RefreshTokenRejected``: a
person must create a new one on eloverblik.dk. The data hub asks clients to back off when it
is busy (429, 503): ``EloverblikUnavailable``, to be tried again later.

Exceptions::

    EloverblikError             anything this client cannot do (base class)
      RefreshTokenRejected      the refresh token expired or was revoked
      EloverblikUnavailable     the data hub is busy, down or unreachable; try later
      TimeSeriesError           (from ``timeseries``) an answer not of the documented shape
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import date
from typing import Any

from openbranch.integrations.eloverblik.timeseries import HourValue, TimeSeriesError, hour_values

__all__ = [
    "DEFAULT_URL",
    "EloverblikClient",
    "EloverblikError",
    "EloverblikUnavailable",
    "RefreshTokenRejected",
]

DEFAULT_URL = "https://api.eloverblik.dk/customerapi"
_MAX_DAYS = 730  # the data hub answers at most two years per request
_BATCH = 10  # metering points per request, a small request the hub answers in time


class EloverblikError(RuntimeError):
    """Something the Eloverblik client could not do; ``str()`` says what and why."""


class RefreshTokenRejected(EloverblikError):
    """The refresh token was refused: expired (they last a year at most) or revoked."""


class EloverblikUnavailable(EloverblikError):
    """The data hub is busy (429, 503), failing (5xx) or unreachable: try again later."""


class EloverblikClient:
    """One refresh token's session with the data hub (not thread-safe)."""

    def __init__(self, *, refresh_token: str, url: str = DEFAULT_URL, timeout: float = 60.0):
        if not refresh_token.strip():
            raise EloverblikError("the Eloverblik refresh token is empty")
        self.url = url.rstrip("/")
        self._refresh_token = refresh_token.strip()
        self._timeout = timeout
        self._access: str | None = None
        self.token_requests = 0  # how many access tokens this session bought

    def _request(
        self, method: str, path: str, token: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the configured https URL
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as answer:  # noqa: S310
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            text = exc.read()[:300].decode("utf-8", "replace")
            exc.close()
            return exc.code, text
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise EloverblikUnavailable(f"{self.url}{path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise TimeSeriesError(f"{self.url}{path}: the answer is not JSON ({exc})") from exc

    def _renew(self) -> str:
        status, answer = self._request("GET", "/api/token", self._refresh_token)
        self.token_requests += 1
        if status in (401, 403):
            raise RefreshTokenRejected(
                f"{self.url}/api/token refused the refresh token ({status}): it has expired or"
                " was revoked; create a new one on eloverblik.dk (Datadeling) and put it where"
                " the configuration's refresh_token points"
            )
        self._check(status, "/api/token", answer)
        token = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise EloverblikError(f"{self.url}/api/token: no token in the answer")
        self._access = token
        return token

    def _check(self, status: int, path: str, answer: Any) -> None:
        if status in (429, 503) or status >= 500:
            raise EloverblikUnavailable(f"{self.url}{path}: {status} {answer}")
        if status != 200:
            raise EloverblikError(f"{self.url}{path}: {status} {answer}")

    def time_series(
        self, metering_points: Sequence[str], first: date, last: date
    ) -> list[HourValue]:
        """Every hour the data hub has for ``metering_points`` on the days ``first`` to
        ``last`` (included, Danish days); hours it does not have yet are simply absent."""
        if last < first:
            raise EloverblikError(f"the period ends ({last}) before it starts ({first})")
        if (last - first).days >= _MAX_DAYS:
            raise EloverblikError(f"{first}..{last}: at most {_MAX_DAYS} days per request")
        end = date.fromordinal(last.toordinal() + 1)
        path = f"/api/meterdata/gettimeseries/{first.isoformat()}/{end.isoformat()}/Hour"
        out: list[HourValue] = []
        points = list(metering_points)
        for i in range(0, len(points), _BATCH):
            body = {"meteringPoints": {"meteringPoint": points[i : i + _BATCH]}}
            token = self._access or self._renew()
            status, answer = self._request("POST", path, token, body)
            if status == 401:  # the access token expired: one new one, one more try
                status, answer = self._request("POST", path, self._renew(), body)
            self._check(status, path, answer)
            if not isinstance(answer, dict):
                raise TimeSeriesError(f"{self.url}{path}: the answer is not an object")
            out.extend(hour_values(answer))
        return out
