"""Importing a labeled dataset's records (read by dataset_formats.py) onto a project's items.

Images map to the project's items by key: the file name or URL as written, or its longest
trailing part that is a key (so `https://…/container/dir/a.jpg`, `azureml://…/paths/dir/a.jpg`
and `dir/a.jpg` all find item `dir/a.jpg`). Categories map onto the label tree by full path
or unambiguous bare name; missing labels are created when asked (never deeper than the
tree allows), otherwise reported. Bad records are reported with their position and nothing
changes unless a partial import is accepted. Labels become final labels (a person's
decision is never overwritten) or prelabels; imported_labels.py writes them.

Memory stays bounded whatever the file's size: the file is parsed on a thread and streamed
in batches into temporary tables of the import's transaction (images, annotations, then one
record per image), and SQL pairs annotations with images, records with items and finds
repeats; only one batch, the categories and the first problems are ever held.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit

import asyncpg
import numpy as np

from collab.schema import DEFAULT_TILE_SIZE, SchemaError, TaskType, validate_annotation
from server.data import dataset_formats as label_files
from server.data import imported_labels
from server.data.dataset_formats import (
    CocoAnnotation,
    CocoHead,
    CocoImage,
    FileError,
    Parsed,
    Problem,
)
from server.data.import_transaction import Check, import_transaction
from server.data.progress import Progress, Reporter, batches_in_thread
from server.database import Database
from server.errors import Unprocessable
from server.exports import geometry
from server.projects import label_store as labels
from server.projects.label_tree import (
    MAX_DEPTH,
    LabelIndex,
    LabelNode,
    check_name,
    flatten,
    name_key,
)
from server.validation import Strict

MAX_REPORTED = 1000
# Phases after reading the file, continuing dataset_formats' order of problems.
MATCHING, LABELS, BUILDING = 4, 5, 6
BATCH = 5000          # entries per COPY into a staging table
WRITE_BATCH = 500     # records built and written at a time
_LABEL_ROWS = "SELECT id, parent_id, name FROM labels WHERE project_id = $1 ORDER BY position"

_STAGING = """
CREATE TEMP TABLE import_images (ord integer PRIMARY KEY, key text COLLATE "C" NOT NULL,
                                 file_name text NOT NULL, width integer, height integer)
ON COMMIT DROP;
CREATE TEMP TABLE import_annotations (ord integer NOT NULL, image_key text COLLATE "C" NOT NULL,
                                      category text, category_ref text NOT NULL, geometry bytea)
ON COMMIT DROP;
CREATE TEMP TABLE import_records (ord integer PRIMARY KEY, position text NOT NULL, image text NOT NULL,
                                  candidates text[] NOT NULL, paths text[] NOT NULL,
                                  record bytea NOT NULL)
ON COMMIT DROP;
"""
# The first image of each id stands; the later ones are reported and set aside.
_REPEATED_IMAGES = """
CREATE TEMP TABLE import_repeated ON COMMIT DROP AS
SELECT ord, key, file_name FROM (
    SELECT ord, key, file_name, row_number() OVER (PARTITION BY key ORDER BY ord) AS nth
    FROM import_images) numbered
WHERE nth > 1;
DELETE FROM import_images WHERE ord IN (SELECT ord FROM import_repeated);
CREATE INDEX ON import_annotations (image_key, ord);
CREATE INDEX ON import_images (key);
ANALYZE import_images;
ANALYZE import_annotations;
"""
_REPEATED = "SELECT ord, key, file_name FROM import_repeated ORDER BY ord"
_ORPHANS = """
SELECT a.ord, a.image_key FROM import_annotations a
WHERE NOT EXISTS (SELECT 1 FROM import_images i WHERE i.key = a.image_key) ORDER BY a.ord
"""
_GROUPED = """
SELECT i.ord, i.key, i.file_name, i.width, i.height,
       a.ord AS ann, a.category, a.category_ref, a.geometry
FROM import_images i LEFT JOIN import_annotations a ON a.image_key = i.key
ORDER BY i.ord, a.ord
"""
# Each record's item: the first of its key candidates that is a present item; the second
# and later records of one item are reported.
_MATCH = """
CREATE TEMP TABLE import_matches ON COMMIT DROP AS
SELECT r.ord, m.id AS item_id, m.key,
       row_number() OVER (PARTITION BY m.id ORDER BY r.ord) AS nth,
       first_value(r.position) OVER (PARTITION BY m.id ORDER BY r.ord) AS first_position
FROM import_records r LEFT JOIN LATERAL (
    SELECT it.id, it.key FROM unnest(r.candidates) WITH ORDINALITY AS c(key, n)
    JOIN items it ON it.project_id = $1 AND it.key = c.key AND it.status <> 'missing'
    ORDER BY c.n LIMIT 1) m ON true
"""
_UNMATCHED = """
SELECT m.ord, r.position, r.image, m.item_id, m.key, m.first_position
FROM import_matches m JOIN import_records r USING (ord)
WHERE m.item_id IS NULL OR m.nth > 1 ORDER BY m.ord
"""
_MATCHED = "SELECT count(*) FROM import_matches WHERE item_id IS NOT NULL AND nth = 1"
_USED_LABELS = """
SELECT DISTINCT unnest(r.paths) AS path FROM import_records r JOIN import_matches m USING (ord)
WHERE m.item_id IS NOT NULL AND m.nth = 1
"""
_TO_WRITE = """
SELECT r.ord, r.record, it.id, it.key, it.decided_by, it.width, it.height
FROM import_matches m JOIN import_records r USING (ord) JOIN items it ON it.id = m.item_id
WHERE m.nth = 1 ORDER BY m.ord
"""


class LabelImportOptions(Strict):
    format: Literal["coco", "jsonl"] | None = None
    labels_as: imported_labels.LabelsAs = "final"
    create_labels: bool = False
    accept_partial: bool = False




@dataclass
class ProblemLog:
    """Every problem counted, the first MAX_REPORTED (in the file's order) kept."""

    phase: int = 0                  # the order of problems added without one
    found: int = 0
    _kept: list[tuple[tuple[int, int], int, Problem]] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=itertools.count)

    def append(self, problem: Problem) -> None:
        self.found += 1
        self._kept.append((problem.order or (self.phase, 0), next(self._seq), problem))
        if len(self._kept) >= 2 * MAX_REPORTED:
            self._kept.sort(key=lambda k: k[:2])
            del self._kept[MAX_REPORTED:]

    def extend(self, problems: Iterable[Problem]) -> None:
        for p in problems:
            self.append(p)

    def reported(self) -> list[dict[str, str]]:
        """The first problems as the API lists them."""
        self._kept.sort(key=lambda k: k[:2])
        return [{"position": p.position, "message": p.message} for _, _, p in self._kept[:MAX_REPORTED]]


@dataclass
class _Staged:
    """What reading the file found: its format, entries read and where labels are defined."""

    kind: label_files.Kind
    total: int = 0
    label_positions: dict[str, str] = field(default_factory=dict)


def check_kind(filename: str, declared: str | None, task_type: str) -> label_files.Kind:
    """The file's format, from its name or as declared; 422 bad_file when it has none or
    cannot carry the project's labels."""
    try:
        kind = label_files.detect(filename, declared)
        if task_type == "semantic" and kind == "jsonl":
            raise FileError("AutoML JSON Lines has no semantic masks; import a COCO file instead")
    except FileError as exc:
        raise Unprocessable(str(exc), code="bad_file") from None
    return kind


async def import_label_file(db: Database, pid: int, user_id: int, task_type: str, path: Path,
                            filename: str, opts: LabelImportOptions, max_pixels: int,
                            progress: Progress | None = None, *,
                            check: Check | None = None) -> dict[str, Any]:
    """Import a COCO or JSON Lines file onto the project's items, in one transaction under
    the project row lock and the ingest lock; `check` runs first under the project lock.
    422 (bad_file, or the problems) with nothing changed unless `opts.accept_partial`."""
    kind = check_kind(filename, opts.format, task_type)
    report = Reporter(progress)
    log = ProblemLog()
    async with import_transaction(db, pid, check) as conn:
        await conn.execute(_STAGING)
        try:
            staged = await _stage(conn, kind, path, task_type, log, report)
        except FileError as exc:
            raise Unprocessable(str(exc), code="bad_file") from None
        matched = await _match_items(conn, pid, log)
        used = sorted(r["path"] for r in await conn.fetch(_USED_LABELS))
        log.phase = LABELS
        index, created = await _resolve_labels(conn, pid, used, staged.label_positions,
                                               opts.create_labels, log)
        ids = {p: i for p in used if (i := index.resolve(p)) is not None}
        write = opts.accept_partial or not log.found  # else all is rolled back: only look
        done = await _write(conn, user_id, cast(TaskType, task_type), opts.labels_as, ids, set(index.paths),
                            max_pixels, log, write, matched, report)
        if log.found and not opts.accept_partial:
            raise Unprocessable(
                f"{log.found} problem(s) in the file; nothing was imported "
                "(send accept_partial=true to import the valid records)",
                code="records_invalid", details={"errors": log.reported(), "total": staged.total})
    await report(matched, matched, force=True)
    return {
        "format": kind,
        "records": staged.total,
        "matched": matched,
        "labeled": done.applied.labeled,
        "prelabeled": done.applied.prelabeled,
        "kept_human_labels": done.applied.kept_human_labels,
        "skipped_without_labels": done.skipped,
        "created_labels": created,
        "errors": log.reported(),
    }


# --- reading the file into the staging tables ---------------------------------------------

async def _stage(conn: asyncpg.Connection, kind: label_files.Kind, path: Path, task_type: str,
                 log: ProblemLog, report: Reporter) -> _Staged:
    """Fill import_records with one record per image (or line) that the file labels well."""
    if kind == "jsonl":
        return await _stage_jsonl(conn, path, task_type, log, report)
    head = CocoHead()
    read = 0

    def images() -> Iterator[CocoImage | Problem]:
        with path.open("rb") as f:
            yield from label_files.coco_images(f, head)

    async for batch in batches_in_thread(images, BATCH):
        log.extend([p for p in batch if isinstance(p, Problem)])
        await _copy(conn, "import_images", [(i.index, i.key, i.file_name, i.width, i.height)
                                            for i in batch if isinstance(i, CocoImage)])
        read += len(batch)
        await report(read, None)

    def annotations() -> Iterator[CocoAnnotation | Problem]:
        with path.open("rb") as f:
            yield from label_files.coco_annotations(f, head, task_type)

    async for anns in batches_in_thread(annotations, BATCH):
        log.extend([p for p in anns if isinstance(p, Problem)])
        await _copy(conn, "import_annotations", [
            (a.index, a.image_key, a.category, a.category_ref,
             None if a.geometry is None else label_files.dump_json(a.geometry))
            for a in anns if isinstance(a, CocoAnnotation)])
        read += len(anns)
        await report(read, None)
    await conn.execute(_REPEATED_IMAGES)
    async for row in _rows(conn, _REPEATED):
        log.append(label_files.repeated_image(CocoImage(row["ord"], row["key"], row["file_name"],
                                                        None, None)))
    async for row in _rows(conn, _ORPHANS):
        log.append(label_files.unknown_image(CocoAnnotation(row["ord"], row["image_key"], None, "")))
    await _stage_coco_records(conn, task_type, log)
    return _Staged("coco", head.images, head.label_positions)


async def _stage_coco_records(conn: asyncpg.Connection, task_type: str, log: ProblemLog) -> None:
    """Pair each image with its annotations (SQL does the grouping) and stage its record."""
    pending: list[asyncpg.Record] = []   # the last image's rows, which the next chunk may continue
    async for chunk in _chunks(conn, _GROUPED, BATCH):
        rows = pending + chunk
        last = rows[-1]["ord"]
        cut = next(n for n in range(len(rows) - 1, -1, -1) if rows[n]["ord"] != last) + 1 \
            if rows[0]["ord"] != last else 0
        ready, pending = rows[:cut], rows[cut:]
        if ready:
            await _stage_groups(conn, ready, task_type, log)
    if pending:
        await _stage_groups(conn, pending, task_type, log)


async def _stage_groups(conn: asyncpg.Connection, rows: list[asyncpg.Record], task_type: str,
                        log: ProblemLog) -> None:
    def build() -> tuple[list[tuple[Any, ...]], list[Problem]]:
        problems: list[Problem] = []
        staged = []
        for image, anns in _groups(rows):
            record = label_files.coco_record(image, anns, task_type, problems)
            if record is not None:
                staged.append(_record_row(image.index, record))
        return staged, problems

    staged, problems = await asyncio.to_thread(build)
    log.extend(problems)
    await _copy(conn, "import_records", staged)


def _groups(rows: list[asyncpg.Record]) -> Iterator[tuple[CocoImage, list[CocoAnnotation]]]:
    """Consecutive rows of one image as the image and its annotations."""
    image: CocoImage | None = None
    anns: list[CocoAnnotation] = []
    for row in rows:
        if image is None or row["ord"] != image.index:
            if image is not None:
                yield image, anns
            image = CocoImage(row["ord"], row["key"], row["file_name"], row["width"], row["height"])
            anns = []
        if row["ann"] is not None:
            geometry = None if row["geometry"] is None else label_files.load_json(row["geometry"])
            anns.append(CocoAnnotation(row["ann"], image.key, row["category"], row["category_ref"],
                                       geometry))
    if image is not None:
        yield image, anns


async def _stage_jsonl(conn: asyncpg.Connection, path: Path, task_type: str, log: ProblemLog,
                       report: Reporter) -> _Staged:
    staged = _Staged("jsonl")

    def lines() -> Iterator[tuple[Parsed | Problem, tuple[Any, ...] | None]]:
        with path.open("rb") as f:
            for entry in label_files.jsonl_lines(f, task_type):
                # The record's row is made here, on the reading thread.
                if isinstance(entry, Parsed) and label_files.labeled(entry):
                    yield entry, _record_row(_line(entry), entry)
                else:
                    yield entry, None

    async for batch in batches_in_thread(lines, BATCH):
        for entry, _ in batch:
            if isinstance(entry, Problem):
                log.append(entry)
            else:
                for p in entry.label_paths():
                    staged.label_positions.setdefault(p, entry.position)
        await _copy(conn, "import_records", [row for _, row in batch if row is not None])
        staged.total += len(batch)
        await report(staged.total, None)
    return staged


def _line(record: Parsed) -> int:
    return int(record.position.removeprefix("line "))


def _record_row(ord_: int, record: Parsed) -> tuple[Any, ...]:
    return (ord_, record.position, record.image, key_candidates(record.image),
            sorted(record.label_paths()), record.dump())


async def _copy(conn: asyncpg.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        await conn.copy_records_to_table(table, records=rows)


async def _chunks(conn: asyncpg.Connection, query: str, size: int,
                  *args: Any) -> AsyncIterator[list[asyncpg.Record]]:
    """A query's rows, `size` at a time, through a cursor of the open transaction."""
    cursor = await conn.cursor(query, *args)
    while rows := await cursor.fetch(size):
        yield rows


async def _rows(conn: asyncpg.Connection, query: str, *args: Any) -> AsyncIterator[asyncpg.Record]:
    async for chunk in _chunks(conn, query, BATCH, *args):
        for row in chunk:
            yield row


# --- matching, labels, writing ---------------------------------------------------------------

def key_candidates(image: str) -> list[str]:
    """Keys an image reference may mean, longest first: its path, then shorter tails."""
    text = image.strip()
    if "://" in text:
        text = unquote(urlsplit(text).path)
    parts = [p for p in text.replace("\\", "/").split("/") if p]
    return ["/".join(parts[i:]) for i in range(len(parts))]


async def _match_items(conn: asyncpg.Connection, pid: int, log: ProblemLog) -> int:
    """Match the staged records with items; report the unmatched and repeated ones and
    return how many records matched an item of their own."""
    await conn.execute("ANALYZE import_records")
    await conn.execute(_MATCH, pid)
    async for row in _rows(conn, _UNMATCHED):
        order = (MATCHING, row["ord"])
        if row["item_id"] is None:
            log.append(Problem(row["position"], f"no item of this project has the image {row['image']!r}",
                               order))
        else:
            log.append(Problem(row["position"], f"the image {row['key']!r} is labeled twice "
                                                f"(first at {row['first_position']})", order))
    matched: int = await conn.fetchval(_MATCHED)
    return matched


async def _resolve_labels(conn: asyncpg.Connection, pid: int, used: list[str],
                          positions: dict[str, str], create: bool,
                          problems: ProblemLog) -> tuple[LabelIndex, list[str]]:
    """The project's labels, after creating the missing ones when `create`, and the paths
    created. An ambiguous bare name is never created: it would make a third label of that
    name."""
    index = LabelIndex.from_rows(await conn.fetch(_LABEL_ROWS, pid))
    missing = [p for p in used if index.resolve(p) is None]
    ambiguous = {p for p in missing if "/" not in p and len(index.by_name.get(name_key(p), ())) > 1}
    for p in sorted(ambiguous):
        problems.append(Problem(positions.get(p, "file"), index.problem(p)))
    creatable = [p for p in missing if p not in ambiguous]
    if creatable and create:
        created = await _create_labels(conn, pid, creatable, positions, problems)
        return LabelIndex.from_rows(await conn.fetch(_LABEL_ROWS, pid)), created
    problems.extend(Problem(positions.get(p, "file"),
                            f"{index.problem(p)}; send create_labels=true to create it")
                    for p in creatable)
    return index, []


async def _create_labels(conn: asyncpg.Connection, pid: int, paths: list[str],
                         positions: dict[str, str], problems: ProblemLog) -> list[str]:
    """Add the missing label paths to the tree (parents too); return the paths created."""
    tree = await labels.read_tree(conn, pid)
    created: list[str] = []
    for path in paths:
        parts = path.split("/")
        where = positions.get(path, "file")
        if len(parts) > MAX_DEPTH:
            problems.append(Problem(where, f"label {path!r} would be {len(parts)} levels deep; "
                                           f"label trees are at most {MAX_DEPTH}"))
            continue
        try:
            for part in parts:
                check_name(part, ("label",))
        except Unprocessable as exc:
            problems.append(Problem(where, f"label {path!r}: {exc.message}"))
            continue
        level = tree
        for part in parts:
            node = next((n for n in level if name_key(n["name"]) == name_key(part)), None)
            if node is None:
                node = {"name": part, "children": []}
                level.append(node)
            level = node["children"]
        created.append(path)
    if created:
        nodes = [LabelNode.model_validate(_node(n)) for n in tree]
        await labels.apply_tree(conn, pid, flatten(nodes))
    return created


def _node(n: dict[str, Any]) -> dict[str, Any]:
    out = {"name": n["name"], "children": [_node(c) for c in n["children"]]}
    if n.get("id") is not None:
        out["id"] = n["id"]
    if n.get("assigned_hotkey"):
        out["hotkey"] = n["assigned_hotkey"]  # an owner's key stays when labels are added
    return out


@dataclass
class _Written:
    applied: imported_labels.Applied = field(default_factory=imported_labels.Applied)
    skipped: int = 0                # matched records without any label


async def _write(conn: asyncpg.Connection, user_id: int, task_type: TaskType,
                 labels_as: imported_labels.LabelsAs, ids: dict[str, int], label_ids: set[int],
                 max_pixels: int, log: ProblemLog, write: bool, matched: int,
                 report: Reporter) -> _Written:
    """Build each matched record's annotation and, when `write`, write it."""
    out = _Written()
    done = 0
    async for chunk in _chunks(conn, _TO_WRITE, WRITE_BATCH):
        rows, skipped, problems = await asyncio.to_thread(
            _annotations, chunk, ids, label_ids, task_type, max_pixels)
        out.skipped += skipped
        log.extend(problems)
        if write:
            out.applied.add(await imported_labels.apply(conn, user_id, labels_as, rows))
        done += len(chunk)
        await report(done, matched)
    return out


def _annotations(chunk: list[asyncpg.Record], ids: dict[str, int], label_ids: set[int],
                 task_type: TaskType, max_pixels: int,
                 ) -> tuple[list[imported_labels.Labeled], int, list[Problem]]:
    """The valid records as labels to write, how many had no labels at all, and the problems."""
    rows: list[imported_labels.Labeled] = []
    problems: list[Problem] = []
    skipped_unlabeled = 0
    for row in chunk:
        r = Parsed.load(row["record"])
        item = {"id": row["id"], "key": row["key"], "decided_by": row["decided_by"],
                "width": row["width"], "height": row["height"]}
        if not r.label_paths() and not (r.empty and task_type in ("bbox", "polygon")):
            skipped_unlabeled += 1  # nothing to import for this image
            continue
        if any(p not in ids for p in r.label_paths()):
            continue  # its label is reported already
        try:
            annotation = build_annotation(r, ids, task_type, item, max_pixels)
            validate_annotation(annotation, task_type, label_ids=label_ids, strict_submit=True)
        except (ValueError, KeyError) as exc:
            reason = f"{exc.field}: {exc.reason}" if isinstance(exc, SchemaError) else str(exc)
            problems.append(Problem(r.position, reason, (BUILDING, row["ord"])))
            continue
        rows.append(imported_labels.Labeled(item, annotation))
    return rows, skipped_unlabeled, problems


def build_annotation(r: Parsed, ids: dict[str, int], task_type: str, item: asyncpg.Record,
                     max_pixels: int) -> dict[str, Any]:
    """The record in plain JSON form with label ids; ValueError/SchemaError when it cannot be."""
    if task_type in ("multiclass", "multilabel"):
        return {"classes": [ids[p] for p in r.classes]}
    if task_type in ("bbox", "polygon"):
        return {"shapes": [{**s, "id": f"i{n}", "label": ids[s["label"]], "source": "human"}
                           for n, s in enumerate(r.shapes, start=1)]}
    w, h = r.width, r.height
    if item["width"] and item["height"] and (item["width"], item["height"]) != (w, h):
        raise ValueError(f"the file says the image is {w}x{h}; it is {item['width']}x{item['height']}")
    assert w and h  # parsing refused masks without a size
    if w * h > max_pixels:
        raise ValueError(f"a {w}x{h} mask is larger than the {max_pixels}-pixel limit")
    values = np.zeros((h, w), dtype=np.uint32)
    for path, seg in r.masks:
        values[geometry.decode_segmentation(seg, w, h) != 0] = ids[path]
    tiles = geometry.tiles_from_mask(values, DEFAULT_TILE_SIZE)
    return {"mask": {"tile_size": DEFAULT_TILE_SIZE, "tiles": tiles}}
