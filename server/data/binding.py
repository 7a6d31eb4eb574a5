"""Binding a project to its data: which datastore, which files, and incremental refresh.

The binding (datastore identity and pattern) is fixed once the project starts; the
refresh settings and a datastore's credential (a rotated SAS token, say) stay editable.
Credentials are kept server-side and never returned by the API.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import Field, model_validator

from server.data import ingest
from server.data.datastores.base import DatastoreError
from server.data.datastores.factory import open_datastore
from server.data.datastores.keys import compile_pattern
from server.data.progress import Progress
from server.errors import Conflict, Forbidden, field_error
from server.outbound import AddressRefused, OutboundPolicy
from server.settings import Settings
from server.validation import Strict

_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
_SECRET_FIELDS = ("sas_token", "account_key", "connection_string")
_UPDATE = """
UPDATE projects SET dataset = $2, refresh = $3, updated_at = now() WHERE id = $1
"""
_CLEAR_ITEMS = "DELETE FROM items WHERE project_id = $1"
_BIND_UPLOAD = """
UPDATE projects SET dataset = '{"datastore": {"kind": "upload"}, "pattern": "**/*.*"}'::jsonb,
                    updated_at = now()
WHERE id = $1
"""


class LocalStore(Strict):
    kind: Literal["local"]
    path: str = Field(min_length=1, max_length=4096, description="absolute folder on the server")


class UploadStore(Strict):
    kind: Literal["upload"]


class AzureBlobStore(Strict):
    kind: Literal["azure_blob"]
    account_url: str = Field(min_length=1, max_length=2048)
    container: str
    prefix: str = Field("", max_length=1024)
    sas_token: str | None = Field(None, max_length=8192)
    account_key: str | None = Field(None, max_length=512)
    connection_string: str | None = Field(None, max_length=8192)

    @model_validator(mode="after")
    def _one_credential(self) -> AzureBlobStore:
        given = [f for f in _SECRET_FIELDS if getattr(self, f)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of sas_token, account_key or connection_string"
                f" (got {', '.join(given) or 'none'})"
            )
        if not _CONTAINER.match(self.container):
            raise ValueError(
                "container must be 3-63 lowercase letters, digits and single hyphens"
            )
        return self


Datastore = Annotated[LocalStore | UploadStore | AzureBlobStore, Field(discriminator="kind")]


class RefreshSettings(Strict):
    enabled: bool = False
    interval_s: int = Field(3600, ge=60, le=7 * 24 * 3600)


class DatasetBody(Strict):
    datastore: Datastore
    pattern: str = Field("**/*.*", min_length=1, max_length=1024)
    refresh: RefreshSettings = Field(default_factory=RefreshSettings)


def check_pattern(pattern: str) -> None:
    """Refuse a pattern that could leave the datastore or that means nothing clear:
    `**` stands for whole folders, so it is a path segment of its own (`dir/**/*.png`)."""
    parts = pattern.split("/")
    if pattern.startswith("/") or "\\" in pattern or "\x00" in pattern or ".." in parts:
        raise field_error(
            "pattern", "patterns are relative to the datastore and cannot contain '..' or '\\'"
        )
    inner = pattern.strip().strip("/").split("/")
    if not pattern.strip() or any(not seg.strip() for seg in inner):
        raise field_error("pattern", "the pattern is empty or has an empty folder name ('//')",
                          code="invalid_pattern")
    bad = next((seg for seg in inner if "**" in seg and seg != "**"), None)
    if bad is not None:
        raise field_error(
            "pattern",
            f"'**' matches whole folders and must be a segment of its own, as in "
            f"dir/**/*.png (not {bad!r}); use '*' inside a name",
            code="invalid_pattern",
        )


def resolve_local(settings: Settings, raw: str) -> Path:
    """The real folder for a `local` datastore, which must lie inside an allowed root."""
    if not os.path.isabs(raw):
        raise field_error("datastore.path", "must be an absolute path")
    real = Path(os.path.realpath(raw))
    roots = [Path(os.path.realpath(r)) for r in settings.effective_local_roots]
    if not any(real == r or r in real.parents for r in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise field_error(
            "datastore.path",
            f"folder is outside the allowed roots ({allowed}); an instance admin sets "
            "COLABEL_LOCAL_ROOTS",
            code="path_not_allowed",
        )
    if not real.is_dir():
        raise field_error("datastore.path", "folder does not exist", code="path_not_found")
    return real


async def check_azure(settings: Settings, store: AzureBlobStore) -> None:
    """Refuse a binding whose account URL, or any endpoint its connection string names, is
    not one the server may connect to. Only the URLs are judged here; the addresses a host
    name resolves to are judged when the connection is made."""
    from server.data.datastores.azure import AzureBlobDatastore

    policy = OutboundPolicy.from_settings(settings)
    try:
        policy.check_url(store.account_url)
    except AddressRefused as exc:
        raise field_error("datastore.account_url", str(exc), code="address_not_allowed") from None
    try:
        datastore = AzureBlobDatastore.from_binding(store.model_dump(), policy)
    except DatastoreError as exc:
        raise field_error("datastore", str(exc)) from None
    field = "datastore.connection_string" if store.connection_string else "datastore.account_url"
    try:
        for url in datastore.endpoints():
            policy.check_url(url)
    except AddressRefused as exc:
        raise field_error(field, str(exc), code="address_not_allowed") from None
    finally:
        await datastore.close()


async def validate(settings: Settings, body: DatasetBody) -> dict[str, Any]:
    """Check a binding and return the form stored in the project (secrets included)."""
    check_pattern(body.pattern)
    store = body.datastore
    stored = store.model_dump()
    if isinstance(store, LocalStore):
        stored["path"] = str(resolve_local(settings, store.path))
    elif isinstance(store, AzureBlobStore):
        await check_azure(settings, store)
        stored["account_url"] = store.account_url.rstrip("/")
        stored["prefix"] = store.prefix.strip("/")
        stored = {k: v for k, v in stored.items() if v is not None}
    return {"datastore": stored, "pattern": body.pattern}


def identity(binding: dict[str, Any]) -> dict[str, Any]:
    """The part of a binding that cannot change after start: everything but secrets."""
    store = {k: v for k, v in binding["datastore"].items() if k not in _SECRET_FIELDS}
    return {"datastore": store, "pattern": binding["pattern"]}


def public(binding: dict[str, Any] | None) -> dict[str, Any] | None:
    """The binding as the API shows it: credentials replaced by which kind is set."""
    if binding is None:
        return None
    shown = identity(binding)
    secret = next((f for f in _SECRET_FIELDS if f in binding["datastore"]), None)
    if secret is not None:
        shown["datastore"]["credential"] = secret
    return shown


def check_local_folder(is_admin: bool, body: DatasetBody, old: dict[str, Any] | None) -> None:
    """Only instance admins bind folders on the server: a folder under the allowed roots may
    hold any team's images. An owner may still send the binding an admin made, unchanged,
    to edit its refresh settings."""
    store = body.datastore
    if is_admin or not isinstance(store, LocalStore):
        return
    if old is not None and old["datastore"] == {"kind": "local", "path": store.path} \
            and old["pattern"] == body.pattern:
        return
    raise Forbidden(
        "only an instance admin can bind a folder on the server; upload the images or use "
        "an Azure Blob container, or ask an admin to bind the folder",
        code="local_folder_admin_only", details={"field": "datastore"},
    )


def check_rebind(old: dict[str, Any] | None, new: dict[str, Any], started: bool) -> bool:
    """Whether `new` binds the same data as `old` (refresh settings and credentials aside);
    409 when it does not and the project has started."""
    same = old is not None and identity(old) == identity(new)
    if started and not same:
        raise Conflict(
            "the dataset binding cannot change once the project has started; "
            "only refresh settings and credentials can",
            code="immutable_field",
            details={"field": "dataset"},
        )
    return same


async def save(conn: asyncpg.Connection, pid: int, binding: dict[str, Any],
               refresh: RefreshSettings, *, same: bool) -> bool:
    """Store the binding (409 while the project's data is being registered); when it binds
    other data than before, drop the old binding's items. True when the new data's files
    are to be registered (a `bind` job, jobs.py)."""
    await ingest.lock_project(conn, pid, wait=False)
    await conn.execute(_UPDATE, pid, binding, refresh.model_dump())
    if same:
        return False
    # A new binding before the start replaces whatever the old one brought in.
    await conn.execute(_CLEAR_ITEMS, pid)
    return True


async def check_readable(settings: Settings, pid: int | None, binding: dict[str, Any]) -> None:
    """Read the first name the binding lists, so a datastore that cannot be read at all (a
    wrong key, a missing container) is refused at once (422) rather than by the job that
    lists it all."""
    if binding["datastore"]["kind"] == "upload":
        return  # the server's own folder: empty until the first upload
    store = open_datastore(settings, pid or 0, binding)
    try:
        keys = store.list_keys(compile_pattern(binding["pattern"]).list_prefix)
        with contextlib.suppress(StopAsyncIteration):
            await anext(keys)
        await keys.aclose()  # type: ignore[attr-defined]
    except DatastoreError as exc:
        raise field_error("datastore", f"cannot read the datastore: {exc}",
                          code="datastore_error") from None
    finally:
        await store.close()


async def ingest_files(conn: asyncpg.Connection, settings: Settings, pid: int,
                       binding: dict[str, Any], *, kind: str, detect_missing: bool,
                       progress: Progress | None = None) -> ingest.IngestResult:
    """List the bound datastore through the binding's pattern and register what it holds
    (inside the caller's transaction, under the project's ingest lock)."""
    store = open_datastore(settings, pid, binding)
    try:
        return await ingest.ingest_binding(
            conn, pid, settings.max_items_per_project, store, binding["pattern"], kind=kind,
            detect_missing=detect_missing, progress=progress,
        )
    finally:
        await store.close()


async def bind_uploads(conn: asyncpg.Connection, pid: int, started: bool) -> None:
    """Bind a project that has no data yet to its own upload storage, on its first upload;
    409 once it has started, when its binding can no longer change."""
    if started:
        raise Conflict("bind a dataset first", code="no_dataset")
    await conn.execute(_BIND_UPLOAD, pid)
