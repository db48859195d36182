"""Push the rendered dashboards to a live Grafana through its HTTP API, idempotently: a
dashboard whose content already matches is left alone, so a second push changes nothing.

This speaks the four endpoints it needs with the standard library instead of grafana-client:
grafana-client (4.x and 5.x) depends on niquests, which installs urllib3-future over urllib3
for the whole environment, and with it requests and influxdb-client leaked sockets in our test
suite (see docs/DECISIONS.md #22).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from openbranch.dashboards.alerts import alert_rules
from openbranch.dashboards.build import all_dashboards
from openbranch.dashboards.model import Fleet

__all__ = ["GrafanaError", "push", "push_alert_rules", "push_fleet"]


class GrafanaError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"Grafana {status}: {message}")


class _Api:
    def __init__(self, url: str, token: str) -> None:
        self._url = url.rstrip("/") + "/api"
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the operator's Grafana URL
            self._url + path, data=data, method=method, headers=self._headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise GrafanaError(exc.code, exc.read().decode(errors="replace")) from None


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    ignore = {"id", "version"}
    return {k: v for k, v in a.items() if k not in ignore} == {
        k: v for k, v in b.items() if k not in ignore
    }


def push(
    url: str, token: str, *, folder: str, folder_uid: str, dashboards: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Create the folder if needed and every dashboard that differs; return what changed."""
    api = _Api(url, token)
    changes: list[str] = []
    if folder_uid not in {f["uid"] for f in api.call("GET", "/folders")}:
        api.call("POST", "/folders", {"uid": folder_uid, "title": folder})
        changes.append(f"created folder {folder}")
    for dashboard in dashboards:
        try:
            current = api.call("GET", f"/dashboards/uid/{dashboard['uid']}")["dashboard"]
        except GrafanaError as exc:
            if exc.status != 404:
                raise
            current = None
        if current is not None and _same(current, dashboard):
            continue
        api.call(
            "POST",
            "/dashboards/db",
            {"dashboard": dict(dashboard), "folderUid": folder_uid, "overwrite": True},
        )
        changes.append(f"{'updated' if current else 'created'} dashboard {dashboard['title']}")
    return changes


def push_alert_rules(
    url: str, token: str, *, folder_uid: str, group: str, rules: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Create or update Grafana-managed alert rules through the alerting provisioning API (the
    folder must exist: push the dashboards first); unchanged rules are left alone."""
    api = _Api(url, token)
    changes: list[str] = []
    for rule in rules:
        wanted = dict(rule, folderUID=folder_uid, ruleGroup=group, orgID=1)
        path = f"/v1/provisioning/alert-rules/{rule['uid']}"
        try:
            current = api.call("GET", path)
        except GrafanaError as exc:
            if exc.status != 404:
                raise
            api.call("POST", "/v1/provisioning/alert-rules", wanted)
            changes.append(f"created alert rule {rule['title']}")
            continue
        if any(current.get(k) != v for k, v in wanted.items()):
            api.call("PUT", path, wanted)
            changes.append(f"updated alert rule {rule['title']}")
    return changes


def push_fleet(url: str, token: str, fleet: Fleet) -> list[str]:
    """Every dashboard of ``fleet`` into its folder, then its alert rules; what changed."""
    uid = f"openbranch-{fleet.id}"
    changes = push(
        url,
        token,
        folder=fleet.name,
        folder_uid=uid,
        dashboards=[board.to_json() for board in all_dashboards(fleet).values()],
    )
    return changes + push_alert_rules(
        url,
        token,
        folder_uid=uid,
        group=uid,
        rules=[rule.to_json(fleet) for rule in alert_rules(fleet)],
    )
