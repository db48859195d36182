"""Push the rendered dashboards to a live Grafana through grafana-client, idempotently: a
dashboard whose content already matches is left alone, so a second push changes nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

__all__ = ["push"]


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    ignore = {"id", "version"}
    return {k: v for k, v in a.items() if k not in ignore} == {
        k: v for k, v in b.items() if k not in ignore
    }


def push(
    url: str, token: str, *, folder: str, folder_uid: str, dashboards: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Create the folder if needed and every dashboard that differs; return what changed."""
    api = GrafanaApi.from_url(url, credential=token)
    changes: list[str] = []
    if folder_uid not in {f["uid"] for f in api.folder.get_all_folders()}:
        api.folder.create_folder(folder, uid=folder_uid)
        changes.append(f"created folder {folder}")
    for dashboard in dashboards:
        try:
            current = api.dashboard.get_dashboard(dashboard["uid"])["dashboard"]
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            current = None
        if current is not None and _same(current, dashboard):
            continue
        api.dashboard.update_dashboard(
            {"dashboard": dict(dashboard), "folderUid": folder_uid, "overwrite": True}
        )
        changes.append(f"{'updated' if current else 'created'} dashboard {dashboard['title']}")
    return changes
