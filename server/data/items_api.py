"""Items: list and inspect a project's items, and render their media for the browser."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Literal

import asyncpg
from starlette.responses import Response

from server.accounts.roles import Role
from server.data import item_query, items, listing
from server.data.datastores.base import DatastoreError, KeyNotFound
from server.data.datastores.factory import open_datastore
from server.data.errors import DatastoreUnavailable
from server.data.items import item_json
from server.errors import NotFound, field_error
from server.media import render as media
from server.projects import projects
from server.routing import Call, Endpoint
from server.work.plan import consensus_plan

CACHE_CONTROL = "private, max-age=3600"


def _low(pa: projects.ProjectAccess) -> int:
    """The project's minimum number of labelers per item (1 without consensus)."""
    return consensus_plan(pa.row)[0]


def _listing_query(call: Call) -> tuple[item_query.ItemFilter, item_query.Order]:
    q = call.request.query_params
    values = {name: q.getlist(name) for name in q}
    return item_query.parse_filter(values), item_query.parse_order(values)


async def list_items(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    pa = await projects.access(call.services.db, call.me, pid, Role.REVIEWER)
    f, order = _listing_query(call)
    after = call.after()
    limit, _ = call.page(default=100, most=1000)
    raw_cursor = call.request.query_params.get("cursor")
    cursor = item_query.Cursor.decode(raw_cursor, order) if raw_cursor else None
    if after:
        # The older id cursor: a page of the id order after that id.
        if cursor is not None or order != item_query.Order():
            raise field_error("after", "pages only the id order without a cursor; use cursor")
        cursor = item_query.Cursor(order, after, after)
    out = await listing.page(call.services.db, pid, f, _low(pa), order, cursor, limit)
    # The older clients' id cursor: where the next page starts (a name search's short page
    # may show nothing and still go on).
    nxt = out["next_cursor"]
    out["next_after"] = (item_query.Cursor.decode(nxt, order).id
                         if order == item_query.Order() and nxt else None)
    return out


async def count_items(call: Call) -> dict[str, Any]:
    pid = call.path_int("pid")
    pa = await projects.access(call.services.db, call.me, pid, Role.REVIEWER)
    f, _ = _listing_query(call)
    return await listing.count(call.services.db, pid, f, _low(pa))


async def neighbours(call: Call) -> dict[str, Any]:
    pid, iid = call.path_int("pid"), call.path_int("iid")
    pa = await projects.access(call.services.db, call.me, pid, Role.REVIEWER)
    f, order = _listing_query(call)
    out = await listing.neighbours(call.services.db, pid, iid, f, _low(pa), order)
    if out is None:
        raise NotFound(f"item {iid} not found in project {pid}")
    return out


async def _item(call: Call, role: Role) -> tuple[projects.ProjectAccess, asyncpg.Record]:
    pid, iid = call.path_int("pid"), call.path_int("iid")
    pa = await projects.access(call.services.db, call.me, pid, role)
    row = await items.one(call.services.db, pid, iid)
    if row is None:
        raise NotFound(f"item {iid} not found in project {pid}")
    return pa, row


async def get_item(call: Call) -> dict[str, Any]:
    pa, row = await _item(call, Role.LABELER)
    out = item_json(row, full=True)
    if pa.role >= Role.REVIEWER:
        # Whose documents on this item a reviewer can watch: labelers at work and done.
        out["labelers"] = await items.labelers(call.services.db, row["id"])
        out.update(agreement=row["agreement"], target=row["target"],
                   decided_at=row["decided_at"].isoformat() if row["decided_at"] else None)
        out.update(await listing.detail(call.services.db, row["id"], row["decided_by_user"]))
    return {"item": out}


def _float_param(call: Call, name: str) -> float | None:
    raw = call.request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise field_error(name, "must be a finite number")
    return value


def _rendering(call: Call) -> tuple[Literal["full", "thumb"], int | None, float | None,
                                     float | None]:
    """The query's size, frame and DICOM window (centre and width)."""
    q = call.request.query_params
    size_raw = q.get("size", "full")
    if size_raw not in ("full", "thumb"):
        raise field_error("size", "must be full or thumb")
    size: Literal["full", "thumb"] = "thumb" if size_raw == "thumb" else "full"
    frame_raw = q.get("frame")
    if frame_raw is not None and not frame_raw.isdigit():
        raise field_error("frame", "must be a non-negative integer")
    frame = int(frame_raw) if frame_raw is not None else None
    wc, ww = _float_param(call, "wc"), _float_param(call, "ww")
    if ww is not None and ww <= 0:
        raise field_error("ww", "window width must be positive")
    return size, frame, wc, ww


async def get_media(call: Call) -> Response:
    pa, row = await _item(call, Role.LABELER)
    size, frame, wc, ww = _rendering(call)
    settings = call.services.settings
    binding = pa.row["dataset"]
    if binding is None:
        raise NotFound("this project has no dataset")
    store = open_datastore(settings, pa.id, binding)
    try:
        try:
            info = await store.head(row["key"])
            etag = items.media_etag(info.etag, size, frame, wc, ww)
            headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL,
                       "X-Content-Type-Options": "nosniff"}
            if call.request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers=headers)
            cache = items.thumb_path(settings.cache_dir, pa.id, row["id"], etag)
            if size == "thumb" and cache.exists():
                body = await asyncio.to_thread(cache.read_bytes)
                return Response(body, media_type=items.thumb_type(body), headers=headers)
            data = await store.read(row["key"], settings.media_max_bytes)
        except KeyNotFound:
            raise NotFound(f"the file for item {row['id']} is missing from the datastore",
                           code="media_missing") from None
        except DatastoreError as exc:
            raise DatastoreUnavailable(f"cannot read the datastore: {exc}") from None
    finally:
        await store.close()
    rendered = await asyncio.to_thread(
        media.render, data, "." + row["key"].rsplit(".", 1)[-1].lower(), size=size, frame=frame,
        wc=wc, ww=ww, max_pixels=settings.media_max_pixels,
    )
    if size == "thumb":
        await asyncio.to_thread(items.write_thumb, cache, rendered.body)
    return Response(rendered.body, media_type=rendered.content_type, headers=headers)


_P = "/api/v1/projects/{pid:int}/items"
ENDPOINTS = [
    Endpoint("GET", _P, list_items,
             "Items, filtered (status, labeler, agreement, needs_review, has_prelabel, name, ids) "
             "and sorted (sort=id|key|updated_at|status, - for descending), keyset-paged by cursor "
             "(reviewers, owners)", tag="items", errors=(401, 403, 404, 422)),
    Endpoint("GET", _P + "/count", count_items,
             "How many items match a listing's filter, counted up to 10,000 (reviewers, owners)",
             tag="items", errors=(401, 403, 404, 422)),
    Endpoint("GET", _P + "/{iid:int}", get_item, "One item with its final label and prelabels",
             tag="items", errors=(401, 404)),
    Endpoint("GET", _P + "/{iid:int}/neighbours", neighbours,
             "The items before and after this one in a filtered, sorted listing (reviewers, owners)",
             tag="items", errors=(401, 403, 404, 422)),
    Endpoint("GET", _P + "/{iid:int}/media", get_media,
             "The item's image for a browser: ?size=thumb|full&frame=&wc=&ww=",
             tag="items", errors=(401, 404, 415, 422, 502)),
]
