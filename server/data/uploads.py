"""Uploads: streaming multipart bodies into a staging folder, with limits and content
checks, then checking a batch against a project's storage and placing it there.

Files are written to disk as they arrive (never held in memory), each checked by its
magic bytes against its extension. Nothing reaches the project's storage until the whole
request has been received and checked, so a refused request changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import asyncpg
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from server.data import binding as dataset_binding
from server.data import ingest
from server.data.datastores.base import DICOM_EXTENSIONS, UnsafeKey
from server.data.datastores.keys import accepted, check_key, extension
from server.errors import (
    BadRequest,
    Conflict,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from server.media import render as media
from server.settings import Settings

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

SNIFF_BYTES = 512
MAX_FIELD_BYTES = 4096
MAX_PARTS = 100_000
_IMAGE_FAMILY = {".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".jfif": "jpeg", ".png": "png",
                 ".bmp": "bmp", ".tif": "tiff", ".tiff": "tiff"}


@dataclass
class StagedFile:
    key: str
    path: Path
    size: int = 0
    head: bytes = b""


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    value: bytearray = field(default_factory=bytearray)
    staged: StagedFile | None = None
    fh: IO[bytes] | None = None


@dataclass
class UploadBatch:
    """What one request carried: staged files and the plain form fields."""

    staging: Path
    files: list[StagedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def check_content(key: str, head: bytes) -> None:
    """Refuse a file whose bytes are not the format its extension promises."""
    ext = extension(key)
    found = media.sniff(head)
    want = "dicom" if ext in DICOM_EXTENSIONS else _IMAGE_FAMILY.get(ext)
    if found != want:
        raise UnsupportedMediaType(
            f"{key}: the content is {found or 'not a supported image'}, not {want}",
            code="content_mismatch", details={"key": key},
        )


def _boundary(request: Request) -> bytes:
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise BadRequest("send multipart/form-data with the files in the field 'files'",
                         code="not_multipart")
    return params[b"boundary"]


async def receive(request: Request, staging_root: Path, *, file_field: str,
                  max_file: int, max_request: int, check_files: bool = True) -> UploadBatch:
    """Stream a multipart body into a fresh staging folder under `staging_root`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_request:
        raise PayloadTooLarge(f"the request is larger than {max_request} bytes")
    boundary = _boundary(request)
    staging_root.mkdir(parents=True, exist_ok=True)
    batch = UploadBatch(Path(tempfile.mkdtemp(prefix="upload-", dir=staging_root)))
    receiver = _Receiver(batch, file_field, max_file, check_files)
    parser = MultipartParser(boundary, receiver.callbacks())
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_request:
                raise PayloadTooLarge(f"the request is larger than {max_request} bytes")
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        receiver.close_file()
        batch.discard()
        raise BadRequest(f"malformed multipart body: {exc}", code="bad_multipart") from None
    except BaseException:
        receiver.close_file()
        batch.discard()
        raise
    return batch


class _Receiver:
    """The multipart parser's callbacks for one request: each part becomes a staged file
    (written as it arrives) or a plain form field, checked against the limits as it goes."""

    def __init__(self, batch: UploadBatch, file_field: str, max_file: int,
                 check_files: bool) -> None:
        self.batch = batch
        self.file_field = file_field
        self.max_file = max_file
        self.check_files = check_files
        self.part = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def close_file(self) -> None:
        """Close the file being written, if any (the request failed halfway through it)."""
        if self.part.fh is not None:
            self.part.fh.close()

    def on_part_begin(self) -> None:
        self.part = _Part()
        if len(self.batch.files) + len(self.batch.fields) >= MAX_PARTS:
            raise Unprocessable(f"at most {MAX_PARTS} parts per request")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name.extend(data[start:end])

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value.extend(data[start:end])

    def on_header_end(self) -> None:
        self.part.headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        part = self.part
        _, params = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in params:
            part.filename = params[b"filename"].decode("utf-8", "replace")
        if part.filename is not None:
            self._open_file(part, part.filename)

    def _open_file(self, part: _Part, filename: str) -> None:
        if part.name != self.file_field:
            raise Unprocessable(f"files go in the field '{self.file_field}', not '{part.name}'")
        key = filename.lstrip("./") if filename.startswith("./") else filename
        try:
            check_key(key)
            check_length(key)
        except UnsafeKey:
            raise Unprocessable(f"unsafe file name {filename!r}", code="unsafe_path",
                                details={"key": filename}) from None
        if self.check_files and not accepted(key):
            raise UnsupportedMediaType(f"{key}: this file type is not accepted",
                                       code="unsupported_extension", details={"key": key})
        path = self.batch.staging / f"{len(self.batch.files):06d}"
        part.staged = StagedFile(key, path)
        part.fh = open(path, "wb")  # noqa: SIM115 - closed in on_part_end or close_file

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        part = self.part
        if part.staged is None:
            part.value.extend(chunk)
            if len(part.value) > MAX_FIELD_BYTES:
                raise Unprocessable(f"form field '{part.name}' is too long")
            return
        staged = part.staged
        staged.size += len(chunk)
        if staged.size > self.max_file:
            raise PayloadTooLarge(f"{staged.key} is larger than {self.max_file} bytes",
                                  details={"key": staged.key})
        if len(staged.head) < SNIFF_BYTES:
            staged.head += chunk[: SNIFF_BYTES - len(staged.head)]
        assert part.fh is not None
        part.fh.write(chunk)

    def on_part_end(self) -> None:
        part = self.part
        if part.staged is None:
            value = part.value.decode("utf-8", "replace")
            if "\x00" in value or "\x00" in part.name:
                raise Unprocessable(f"form field {part.name[:40]!r} contains a NUL character",
                                    code="nul_character")
            self.batch.fields[part.name] = value
            return
        assert part.fh is not None
        part.fh.close()
        part.fh = None
        if self.check_files:
            check_content(part.staged.key, part.staged.head)
        self.batch.files.append(part.staged)


# File systems take names of up to 255 bytes per path part; the whole key is kept well
# within what every one of them takes.
MAX_NAME_BYTES = 255
MAX_KEY_CHARS = 1024


def check_length(key: str) -> None:
    if len(key) > MAX_KEY_CHARS or any(len(p.encode()) > MAX_NAME_BYTES for p in key.split("/")):
        raise Unprocessable(f"file name too long: {key[:80]}…: at most {MAX_NAME_BYTES} bytes a "
                            f"folder or file name and {MAX_KEY_CHARS} characters in all",
                            code="name_too_long", details={"key": key[:MAX_KEY_CHARS]})


def check_paths(keys: list[str], root: Path) -> None:
    """Refuse a batch whose files cannot all be placed: a key that is also a folder of
    another key (`f.png` and `f.png/g.png`), in the batch or against what is stored."""
    folders = {"/".join(k.split("/")[:i]) for k in keys for i in range(1, k.count("/") + 1)}
    clash = sorted(set(keys) & folders)
    if clash:
        raise Unprocessable("a name is both a file and a folder: " + ", ".join(clash[:20]),
                            code="path_conflict", details={"keys": clash[:100]})
    stored = sorted(k for k in keys if (root / k).is_dir())
    stored += sorted(f for f in folders if (root / f).exists() and not (root / f).is_dir())
    if stored:
        raise Unprocessable("a name is a file in the project's storage and a folder here, or the "
                            "other way round: " + ", ".join(stored[:20]),
                            code="path_conflict", details={"keys": stored[:100]})


def place_all(files: list[StagedFile], root: Path) -> None:
    """Move staged files to their keys under `root` (same filesystem: atomic renames). If one
    cannot be placed, the files this call created are removed again, so a failed request
    leaves nothing behind (check_paths has ruled out the clashes that could do that)."""
    created: list[Path] = []
    try:
        for staged in files:
            target = root / staged.key
            target.parent.mkdir(parents=True, exist_ok=True)
            new = not target.exists()
            os.replace(staged.path, target)
            if new:
                created.append(target)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise


def check_uploadable(binding: dict[str, Any] | None) -> None:
    """409 unless the project takes uploads: it has no binding yet, or an upload one."""
    if binding is not None and binding["datastore"]["kind"] != "upload":
        raise Conflict("this project reads its files from a "
                       f"{binding['datastore']['kind']} datastore; uploads need an upload one",
                       code="not_an_upload_project")


def check_names(files: list[StagedFile]) -> list[str]:
    """The batch's keys; 422 when it has no files or names one twice."""
    if not files:
        raise Unprocessable("no files: send them in the multipart field 'files'", code="no_files")
    keys = [f.key for f in files]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise Unprocessable("the same file name appears twice: " + ", ".join(dupes[:20]),
                            code="duplicate_files", details={"keys": dupes})
    return keys


def check_placement(keys: list[str], root: Path, *, overwrite: bool) -> list[str]:
    """Refuse keys that cannot be placed under `root`, or that would replace stored files
    without `overwrite`; return the keys that replace stored files."""
    check_paths(keys, root)
    existing = [k for k in keys if (root / k).exists()]
    if existing and not overwrite:
        raise Conflict(
            f"{len(existing)} file(s) already exist; send overwrite=true to replace them",
            code="files_exist", details={"keys": existing[:100]},
        )
    return existing


async def store(conn: asyncpg.Connection, pid: int, files: list[StagedFile], root: Path, *,
                bound: bool, started: bool, max_items: int) -> ingest.IngestResult:
    """Register the files as items and move them into the project's storage, inside the
    caller's transaction with the project row locked. A project not yet `bound` is bound to
    its uploads here."""
    if not bound:
        await dataset_binding.bind_uploads(conn, pid, started)
    await ingest.lock_project(conn, pid, wait=True)
    result = await ingest.register_keys(conn, pid, max_items, [f.key for f in files],
                                        kind="upload")
    await asyncio.to_thread(place_all, files, root)
    return result


async def receive_one_file(request: Request, settings: Settings, what: str) -> UploadBatch:
    """An import request: exactly one file in the multipart field 'file' (within the import
    size limit) plus plain form fields; 422 naming `what` otherwise."""
    batch = await receive(
        request, settings.uploads_dir / ".staging", file_field="file",
        max_file=settings.import_max_bytes, max_request=settings.import_max_bytes + 65536,
        check_files=False,
    )
    if len(batch.files) != 1:
        batch.discard()
        raise Unprocessable(f"send exactly one {what} in the multipart field 'file'", code="no_file")
    return batch
