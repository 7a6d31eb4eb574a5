"""A folder on the server as a datastore (also used for server-managed uploads)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

from server.data.datastores.base import (
    DatastoreError,
    KeyNotFound,
    ObjectInfo,
    ObjectTooLarge,
    UnsafeKey,
)
from server.data.datastores.keys import check_key

# Directory entries are listed in batches so a 500,000-file folder streams steadily
# without holding the event loop for the whole walk.
_BATCH = 2000


class LocalDatastore:
    """Keys are paths below `root`; nothing outside it is ever listed or opened."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))

    def path_of(self, key: str) -> Path:
        """The real path of `key`, refusing anything that resolves outside the root."""
        check_key(key)
        real = Path(os.path.realpath(self.root / key))
        if self.root not in real.parents:
            raise UnsafeKey(f"key {key!r} leaves the datastore")
        return real

    def _inside(self, real: str) -> bool:
        """Whether the resolved path `real` is the root or below it."""
        root = str(self.root)
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def _walk(self, folder: Path, prefix: str) -> Iterator[str]:
        # Every folder is resolved and listed by its real path, which must stay inside the
        # root: a symlinked folder anywhere on the way (the pattern's fixed prefix included)
        # lists nothing unless it points back inside.
        real = os.path.realpath(folder)
        if not self._inside(real):
            return
        try:
            entries = list(os.scandir(real))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise DatastoreError(f"cannot list {folder}: {exc.strerror}") from None
        # A directory sorts as "name/" so the walk yields keys in plain lexicographic
        # order, the same order Azure Blob lists names in.
        named = sorted(((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e)
                       for e in entries)
        for sort_name, entry in named:
            if entry.is_symlink():
                # Symlinks are followed only while they stay inside the root.
                target = os.path.realpath(entry.path)
                if not self._inside(target):
                    continue
                if os.path.isdir(target):
                    continue  # no directory symlinks: they could loop
            if sort_name.endswith("/"):
                yield from self._walk(Path(entry.path), prefix + sort_name)
            elif entry.is_file():
                yield prefix + entry.name

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every file below `prefix`, in lexicographic key order."""
        start = self.root
        if prefix:
            check_key(prefix.rstrip("/"))
            start = self.root / prefix.rstrip("/")
            prefix = prefix.rstrip("/") + "/"
        walker = self._walk(start, prefix)
        while True:
            batch = await asyncio.to_thread(_take, walker, _BATCH)
            for key in batch:
                yield key
            if len(batch) < _BATCH:
                return

    async def head(self, key: str) -> ObjectInfo:
        path = self.path_of(key)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            raise KeyNotFound(key) from None
        if not os.path.isfile(path):
            raise KeyNotFound(key)
        etag = f"{st.st_mtime_ns:x}-{st.st_size:x}"
        return ObjectInfo(key, st.st_size, etag, datetime.fromtimestamp(st.st_mtime, UTC))

    async def read(self, key: str, max_bytes: int) -> bytes:
        info = await self.head(key)
        if info.size > max_bytes:
            raise ObjectTooLarge(f"{key} is larger than {max_bytes} bytes")
        return await asyncio.to_thread(self.path_of(key).read_bytes)

    async def close(self) -> None:
        return None


def _take(it: Iterator[str], n: int) -> list[str]:
    out = []
    for item in it:
        out.append(item)
        if len(out) == n:
            break
    return out
