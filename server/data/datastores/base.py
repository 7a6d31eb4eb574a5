"""The contract every datastore implements, and the errors it raises."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

# The extensions the product accepts, lower-case; matching is case-insensitive.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".jpe", ".jfif", ".bmp", ".tif", ".tiff"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
ACCEPTED_EXTENSIONS = IMAGE_EXTENSIONS | DICOM_EXTENSIONS


class DatastoreError(Exception):
    """The datastore could not be read (unreachable, bad credentials, ...)."""


class KeyNotFound(DatastoreError):
    """No object with that key."""


class UnsafeKey(DatastoreError):
    """A key that would leave the datastore's root (`..`, absolute, symlink escape)."""


class ObjectTooLarge(DatastoreError):
    """An object larger than the caller allows."""


# What is wrong with one object, not with the datastore as a whole.
OBJECT_ERRORS = (KeyNotFound, UnsafeKey, ObjectTooLarge)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    modified: datetime | None = None


class Datastore(Protocol):
    """Keys are '/'-separated paths relative to the store's root (and prefix)."""

    def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key under `prefix` (a folder, '' for all), in a stable sorted order."""
        ...

    async def read(self, key: str, max_bytes: int) -> bytes:
        """The object's bytes; DatastoreError if larger than `max_bytes`."""
        ...

    async def head(self, key: str) -> ObjectInfo:
        """Size and ETag; KeyNotFound if absent."""
        ...

    async def close(self) -> None: ...


async def list_batches(store: Datastore, prefix: str = "",
                       size: int = 10_000) -> AsyncIterator[list[str]]:
    """The store's `list_keys`, a list of keys at a time (none empty): from the store itself
    where it lists that way (a folder does, a batch per hop to its worker thread), otherwise
    gathered here."""
    native = getattr(store, "list_key_batches", None)
    if native is not None:
        async for listed in native(prefix):
            yield listed
        return
    batch: list[str] = []
    async for key in store.list_keys(prefix):
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
