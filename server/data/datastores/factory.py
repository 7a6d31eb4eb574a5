"""Open the datastore a project is bound to."""

from __future__ import annotations

from typing import Any

from server.data.datastores.base import Datastore
from server.data.datastores.local import LocalDatastore
from server.outbound import OutboundPolicy
from server.settings import Settings


def upload_root(settings: Settings, project_id: int) -> LocalDatastore:
    """The server-managed folder holding a project's uploaded files."""
    root = settings.uploads_dir / str(project_id)
    root.mkdir(parents=True, exist_ok=True)
    return LocalDatastore(root)


def open_datastore(settings: Settings, project_id: int, binding: dict[str, Any]) -> Datastore:
    """A datastore for a stored binding; the caller closes it."""
    store = binding["datastore"]
    kind = store["kind"]
    if kind == "local":
        from pathlib import Path

        return LocalDatastore(Path(store["path"]))
    if kind == "upload":
        return upload_root(settings, project_id)
    if kind == "azure_blob":
        from server.data.datastores.azure import AzureBlobDatastore

        return AzureBlobDatastore.from_binding(store, OutboundPolicy.from_settings(settings))
    raise ValueError(f"unknown datastore kind {kind!r}")
