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

# The walk runs in a worker thread a batch of keys at a time, so a 500,000-file folder
# streams steadily without holding the event loop; a batch is a few milliseconds of work
# for whoever takes it, and few enough thread hand-offs not to count.
_BATCH = 10_000


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

    def _walk(self, folder: str, prefix: str) -> Iterator[list[str]]:
        """The keys below `folder`, in order, a run of one folder's files at a time."""
        # Every folder is resolved and listed by its real path, which must stay inside the
        # root: a symlinked folder anywhere on the way (the pattern's fixed prefix included)
        # lists nothing unless it points back inside.
        real = os.path.realpath(folder)
        if not self._inside(real):
            return
        try:
            with os.scandir(real) as listing:
                entries = list(listing)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise DatastoreError(f"cannot list {folder}: {exc.strerror}") from None
        files = sorted([e.name for e in entries if e.is_file(follow_symlinks=False)])
        if len(files) == len(entries):
            # A folder of plain files, the common case: no per-entry decisions left.
            if files:
                yield [prefix + name for name in files]
            return
        yield from self._walk_mixed(entries, prefix)

    def _walk_mixed(self, entries: list[os.DirEntry[str]], prefix: str) -> Iterator[list[str]]:
        # A directory sorts as "name/" so the walk yields keys in plain lexicographic
        # order, the same order Azure Blob lists names in.
        named = sorted(((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e)
                       for e in entries)
        run: list[str] = []
        for sort_name, entry in named:
            if entry.is_symlink():
                # Symlinks are followed only while they stay inside the root.
                target = os.path.realpath(entry.path)
                if not self._inside(target):
                    continue
                if os.path.isdir(target):
                    continue  # no directory symlinks: they could loop
            if sort_name.endswith("/"):
                if run:
                    yield run
                    run = []
                yield from self._walk(entry.path, prefix + sort_name)
            elif entry.is_file():
                run.append(prefix + entry.name)
        if run:
            yield run

    async def list_key_batches(self, prefix: str = "") -> AsyncIterator[list[str]]:
        """`list_keys`, a list of keys at a time (none empty)."""
        start = self.root
        if prefix:
            check_key(prefix.rstrip("/"))
            start = self.root / prefix.rstrip("/")
            prefix = prefix.rstrip("/") + "/"
        walker = self._walk(str(start), prefix)
        while True:
            batch, more = await asyncio.to_thread(_take, walker, _BATCH)
            if batch:
                yield batch
            if not more:
                return

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every file below `prefix`, in lexicographic key order."""
        async for batch in self.list_key_batches(prefix):
            for key in batch:
                yield key

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


def _take(runs: Iterator[list[str]], n: int) -> tuple[list[str], bool]:
    """At least `n` keys from `runs` (fewer at its end), and whether any may be left."""
    out: list[str] = []
    for run in runs:
        out += run
        if len(out) >= n:
            return out, True
    return out, False
