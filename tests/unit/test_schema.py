from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Doc, Map

from collab.schema import (
    SchemaError,
    TaskType,
    ensure_roots,
    read_annotation,
    rle_decode,
    rle_encode,
    set_status,
    validate_annotation,
    write_annotation,
)

TS = 16


def tile(fill: int = 0, **rows: int) -> str:
    """A TS x TS tile of `fill`, with whole rows set by r<index>=value, as base64 RLE."""
    pixels = np.full((TS, TS), fill, dtype=np.int64)
    for name, value in rows.items():
        pixels[int(name[1:])] = value
    return base64.b64encode(rle_encode(pixels)).decode("ascii")


def box(sid: str, label: Any = 1, **over: Any) -> dict[str, Any]:
    shape = {"id": sid, "kind": "box", "label": label, "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4,
             "source": "human", "confidence": None}
    return {**shape, **over}


def poly(sid: str, label: Any = 1, **over: Any) -> dict[str, Any]:
    shape = {"id": sid, "kind": "polygon", "label": label, "points": [0.1, 0.1, 0.5, 0.1, 0.3, 0.4],
             "source": "human", "confidence": None}
    return {**shape, **over}


ROUND_TRIPS: list[tuple[TaskType, dict[str, Any]]] = [
    ("multiclass", {"classes": [7]}),
    ("multilabel", {"classes": [1, 3, 12]}),
    ("bbox", {"shapes": [box("a", 1), box("b", 2, source="model", confidence=0.75, x=0.0, w=1.0)]}),
    ("polygon", {"shapes": [poly("p1"), poly("p2", 4, points=[0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0])]}),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {"0,0": tile(0, r3=2), "1,0": tile(5), "0,2": tile(1)}}},
     ),
]


def roots(doc: Doc[Any]) -> dict[str, Any]:
    return {name: doc.get(name, type=Map).to_py() for name in ("classes", "shapes", "mask")}


@pytest.mark.parametrize(("task_type", "annotation"), ROUND_TRIPS, ids=[t for t, _ in ROUND_TRIPS])
def test_write_then_read_gives_the_same_plain_form(task_type: TaskType, annotation: dict[str, Any]) -> None:
    doc: Doc[Any] = Doc()
    write_annotation(doc, copy.deepcopy(annotation), task_type, origin="human", author="ann")
    assert read_annotation(doc, task_type) == annotation
    validate_annotation(read_annotation(doc, task_type), task_type, strict_submit=True)
    # A second doc built from the first's update reads the same, so nothing lives outside the CRDT.
    other: Doc[Any] = Doc()
    other.apply_update(doc.get_update())
    assert read_annotation(other, task_type) == annotation


def test_read_of_an_empty_document_is_empty_for_every_task_type() -> None:
    doc: Doc[Any] = Doc()
    assert read_annotation(doc, "multiclass") == {"classes": []}
    assert read_annotation(doc, "bbox") == {"shapes": []}
    assert read_annotation(doc, "semantic") == {"mask": {"tile_size": 256, "tiles": {}}}


def test_ensure_roots_creates_the_four_maps() -> None:
    doc: Doc[Any] = Doc()
    ensure_roots(doc)
    assert set(doc.keys()) == {"meta", "classes", "shapes", "mask"}


def test_read_sorts_classes_numerically_and_shapes_by_id() -> None:
    doc: Doc[Any] = Doc()
    write_annotation(doc, {"classes": [12, 3, 100]}, "multilabel", origin="human", author="ann")
    write_annotation(doc, {"shapes": [box("c"), box("a"), box("b")]}, "bbox", origin="human", author="ann")
    assert read_annotation(doc, "multilabel")["classes"] == [3, 12, 100]
    assert [s["id"] for s in read_annotation(doc, "bbox")["shapes"]] == ["a", "b", "c"]
    assert doc.get("classes", type=Map).to_py() == {"3": True, "12": True, "100": True}


def test_replace_deletes_shapes_classes_and_tiles_not_in_the_annotation() -> None:
    doc: Doc[Any] = Doc()
    write_annotation(doc, {"shapes": [box("a"), box("b"), box("c")]}, "bbox", origin="human", author="ann")
    write_annotation(doc, {"shapes": [box("b")]}, "bbox", origin="human", author="ann")
    assert [s["id"] for s in read_annotation(doc, "bbox")["shapes"]] == ["b"]
    assert set(doc.get("shapes", type=Map).keys()) == {"b"}

    write_annotation(doc, {"classes": [1, 2, 3]}, "multilabel", origin="human", author="ann")
    write_annotation(doc, {"classes": [2]}, "multilabel", origin="human", author="ann")
    assert doc.get("classes", type=Map).to_py() == {"2": True}

    mask = {"tile_size": TS, "tiles": {"0,0": tile(1), "1,0": tile(2)}}
    write_annotation(doc, {"mask": mask}, "semantic", origin="human", author="ann")
    write_annotation(doc, {"mask": {"tile_size": TS, "tiles": {"1,0": tile(2)}}}, "semantic",
                     origin="human", author="ann")
    assert read_annotation(doc, "semantic")["mask"]["tiles"] == {"1,0": tile(2)}
    assert set(doc.get("mask", type=Map).keys()) == {"tile_size", "1,0"}


def test_replace_with_the_key_missing_empties_only_that_root() -> None:
    doc: Doc[Any] = Doc()
    write_annotation(doc, {"shapes": [box("a")]}, "bbox", origin="human", author="ann")
    write_annotation(doc, {"classes": [4]}, "multilabel", origin="human", author="ann")
    write_annotation(doc, {}, "bbox", origin="human", author="ann")
    assert read_annotation(doc, "bbox") == {"shapes": []}
    assert read_annotation(doc, "multilabel") == {"classes": [4]}


def test_merge_adds_and_updates_and_keeps_the_rest() -> None:
    doc: Doc[Any] = Doc()
    write_annotation(doc, {"shapes": [box("a"), box("b")]}, "bbox", origin="human", author="ann")
    write_annotation(doc, {"shapes": [box("b", 5), box("c")]}, "bbox", origin="human", author="ann",
                     replace=False)
    merged = read_annotation(doc, "bbox")["shapes"]
    assert [(s["id"], s["label"]) for s in merged] == [("a", 1), ("b", 5), ("c", 1)]

    write_annotation(doc, {"classes": [1]}, "multilabel", origin="human", author="ann")
    write_annotation(doc, {"classes": [2]}, "multilabel", origin="human", author="ann", replace=False)
    assert read_annotation(doc, "multilabel") == {"classes": [1, 2]}

    write_annotation(doc, {"mask": {"tile_size": TS, "tiles": {"0,0": tile(1)}}}, "semantic",
                     origin="human", author="ann")
    write_annotation(doc, {"mask": {"tile_size": TS, "tiles": {"3,1": tile(2)}}}, "semantic",
                     origin="human", author="ann", replace=False)
    assert read_annotation(doc, "semantic")["mask"]["tiles"] == {"0,0": tile(1), "3,1": tile(2)}


def test_changing_one_label_touches_only_that_field() -> None:
    doc: Doc[Any] = Doc()
    write_annotation(doc, {"shapes": [box("a"), box("b")]}, "bbox", origin="human", author="ann")
    seen: list[tuple[list[Any], set[str]]] = []
    shapes = doc.get("shapes", type=Map)  # the subscription lives as long as this wrapper
    shapes.observe_deep(lambda events: seen.extend((e.path, set(e.keys)) for e in events))
    write_annotation(doc, {"shapes": [box("a", 9), box("b")]}, "bbox", origin="human", author="bob")
    assert seen == [(["a"], {"label"})]


def synced_pair() -> tuple[Doc[Any], Doc[Any]]:
    # The server-side writer gets the higher client id: in a same-key conflict it would win, so a
    # rewrite of an untouched field would overwrite the other side's edit and the tests below would fail.
    server: Doc[Any] = Doc(client_id=2)
    client: Doc[Any] = Doc(client_id=1)
    write_annotation(server, {"shapes": [box("a"), box("b")]}, "bbox", origin="human", author="ann")
    client.apply_update(server.get_update())
    return server, client


def exchange(one: Doc[Any], two: Doc[Any]) -> None:
    u1, u2 = one.get_update(), two.get_update()
    one.apply_update(u2)
    two.apply_update(u1)


def test_a_full_write_leaves_a_concurrent_edit_to_another_shape_intact() -> None:
    server, client = synced_pair()
    stale = read_annotation(server, "bbox")
    client.get("shapes", type=Map)["b"]["x"] = 0.5
    stale["shapes"][0]["label"] = 7
    write_annotation(server, stale, "bbox", origin="consensus", author="consensus")
    exchange(server, client)
    expected = [box("a", 7), box("b", x=0.5)]
    assert read_annotation(server, "bbox")["shapes"] == expected
    assert read_annotation(client, "bbox")["shapes"] == expected


def test_two_writers_editing_different_shapes_converge_to_both_edits() -> None:
    server, client = synced_pair()
    mine, theirs = read_annotation(server, "bbox"), read_annotation(client, "bbox")
    mine["shapes"][0]["label"] = 3
    theirs["shapes"][1].update(y=0.0, h=1.0)
    write_annotation(server, mine, "bbox", origin="human", author="ann")
    write_annotation(client, theirs, "bbox", origin="human", author="bob")
    exchange(server, client)
    expected = [box("a", 3), box("b", y=0.0, h=1.0)]
    assert read_annotation(server, "bbox")["shapes"] == expected
    assert read_annotation(client, "bbox")["shapes"] == expected


def test_origin_is_visible_to_observers() -> None:
    doc: Doc[Any] = Doc()
    ensure_roots(doc)
    origins: list[Any] = []
    watched = [doc.get(name, type=Map) for name in ("shapes", "meta")]  # subscriptions live with these
    for root in watched:
        root.observe_deep(lambda events: origins.extend(e.transaction.origin for e in events))
    write_annotation(doc, {"shapes": [box("a")]}, "bbox", origin="consensus", author="consensus")
    assert origins and set(origins) == {"consensus"}
    origins.clear()
    set_status(doc, "submitted", origin="api", author="ann")
    assert origins and set(origins) == {"api"}


def test_write_is_one_transaction() -> None:
    doc: Doc[Any] = Doc()
    ensure_roots(doc)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    write_annotation(doc, {"shapes": [box("a"), box("b")]}, "bbox", origin="human", author="ann")
    assert len(updates) == 1


def test_source_follows_origin_unless_the_shape_says_and_created_by_is_kept() -> None:
    doc: Doc[Any] = Doc()
    plain = [{k: v for k, v in box(s).items() if k not in ("source", "confidence")} for s in "ab"]
    write_annotation(doc, {"shapes": [plain[0], box("b", source="human")]}, "bbox", origin="model",
                     author="m1")
    write_annotation(doc, {"shapes": [plain[1], box("c")], "status": "draft"}, "bbox", origin="human",
                     author="ann", replace=False)
    shapes = doc.get("shapes", type=Map).to_py()
    assert shapes is not None
    assert [shapes[s]["source"] for s in "abc"] == ["model", "human", "human"]
    assert [shapes[s]["created_by"] for s in "abc"] == ["m1", "m1", "ann"]
    # An edit that omits source keeps the stored one; saying it changes it.
    write_annotation(doc, {"shapes": [{**plain[0], "label": 4}]}, "bbox", origin="human", author="bob",
                     replace=False)
    assert doc.get("shapes", type=Map)["a"]["source"] == "model"
    write_annotation(doc, {"shapes": [box("a", 4)]}, "bbox", origin="human", author="bob", replace=False)
    assert doc.get("shapes", type=Map)["a"]["source"] == "human"
    assert doc.get("shapes", type=Map)["a"]["created_by"] == "m1"


def test_meta_records_author_time_and_status() -> None:
    doc: Doc[Any] = Doc()
    meta = doc.get("meta", type=Map)
    before = datetime.now(UTC)
    write_annotation(doc, {"classes": [1], "status": "submitted"}, "multiclass", origin="human", author="ann")
    stamp = datetime.fromisoformat(meta["updated_at"])
    assert stamp.utcoffset() is not None and before.replace(microsecond=0) <= stamp <= datetime.now(UTC)
    assert (meta["status"], meta["updated_by"]) == ("submitted", "ann")
    write_annotation(doc, {"classes": [2]}, "multiclass", origin="consensus", author="bob")
    assert (meta["status"], meta["updated_by"]) == ("submitted", "bob")
    set_status(doc, "draft", origin="human", author="cy")
    assert (meta["status"], meta["updated_by"]) == ("draft", "cy")
    with pytest.raises(SchemaError) as exc:
        set_status(doc, "done", origin="human", author="cy")  # type: ignore[arg-type]
    assert exc.value.field == "status" and meta["status"] == "draft"


GOOD_TILE = tile(0)
V: list[tuple[TaskType, Any, dict[str, Any], str]] = [
    ("bbox", [], {}, "annotation"),
    ("points", {}, {}, "task_type"),  # type: ignore[list-item]
    ("bbox", {"shapes": "a"}, {}, "shapes"),
    ("bbox", {"shapes": [5]}, {}, "shapes[0]"),
    ("bbox", {"shapes": [box("")]}, {}, "shapes[0].id"),
    ("bbox", {"shapes": [box("x" * 129)]}, {}, "shapes[0].id"),
    ("bbox", {"shapes": [box("a", id=3)]}, {}, "shapes[0].id"),
    ("bbox", {"shapes": [poly("a")]}, {}, "shapes[0].kind"),
    ("polygon", {"shapes": [box("a")]}, {}, "shapes[0].kind"),
    ("bbox", {"shapes": [box("a", label=-1)]}, {}, "shapes[0].label"),
    ("bbox", {"shapes": [box("a", label=1.5)]}, {}, "shapes[0].label"),
    ("bbox", {"shapes": [box("a", label=True)]}, {}, "shapes[0].label"),
    ("bbox", {"shapes": [box("a", label="1")]}, {}, "shapes[0].label"),
    ("bbox", {"shapes": [box("a", label=2**32)]}, {}, "shapes[0].label"),
    ("bbox", {"shapes": [box("a", x=float("nan"))]}, {}, "shapes[0].x"),
    ("bbox", {"shapes": [box("a", x=float("inf"))]}, {}, "shapes[0].x"),
    ("bbox", {"shapes": [box("a", x=-0.1)]}, {}, "shapes[0].x"),
    ("bbox", {"shapes": [box("a", y=1.5)]}, {}, "shapes[0].y"),
    ("bbox", {"shapes": [box("a", x="0.1")]}, {}, "shapes[0].x"),
    ("bbox", {"shapes": [box("a", h=None)]}, {}, "shapes[0].h"),
    ("bbox", {"shapes": [box("a", w=0)]}, {}, "shapes[0].w"),
    ("bbox", {"shapes": [box("a", h=0.0)]}, {}, "shapes[0].h"),
    ("bbox", {"shapes": [box("a", x=0.8, w=0.3)]}, {}, "shapes[0].w"),
    ("bbox", {"shapes": [box("a", y=0.8, h=0.3)]}, {}, "shapes[0].h"),
    ("bbox", {"shapes": [box("a", source="robot")]}, {}, "shapes[0].source"),
    ("bbox", {"shapes": [box("a", confidence=1.5)]}, {}, "shapes[0].confidence"),
    ("bbox", {"shapes": [box("a", confidence=float("nan"))]}, {}, "shapes[0].confidence"),
    ("bbox", {"shapes": [box("a"), box("a")]}, {}, "shapes"),
    ("polygon", {"shapes": [poly("a", points="0,0")]}, {}, "shapes[0].points"),
    ("polygon", {"shapes": [poly("a", points=[0.1, 0.1, 0.2, 0.2])]}, {}, "shapes[0].points"),
    ("polygon", {"shapes": [poly("a", points=[0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4])]}, {}, "shapes[0].points"),
    ("polygon", {"shapes": [poly("a", points=[0.1, 0.1, 1.2, 0.2, 0.3, 0.3])]}, {}, "shapes[0].points[2]"),
    ("multilabel", {"classes": 3}, {}, "classes"),
    ("multilabel", {"classes": ["1"]}, {}, "classes[0]"),
    ("multilabel", {"classes": [1, 2.5]}, {}, "classes[1]"),
    ("multilabel", {"classes": [True]}, {}, "classes[0]"),
    ("multilabel", {"classes": [2, 2]}, {}, "classes"),
    ("multiclass", {"classes": [1], "status": "done"}, {}, "status"),
    ("semantic", {"mask": []}, {}, "mask"),
    ("semantic", {"mask": {"tile_size": 8, "tiles": {}}}, {}, "mask.tile_size"),
    ("semantic", {"mask": {"tile_size": 8192, "tiles": {}}}, {}, "mask.tile_size"),
    ("semantic", {"mask": {"tile_size": 16.0, "tiles": {}}}, {}, "mask.tile_size"),
    ("semantic", {"mask": {"tiles": {}}}, {}, "mask.tile_size"),
    ("semantic", {"mask": {"tile_size": TS, "tiles": []}}, {}, "mask.tiles"),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {"a,b": GOOD_TILE}}}, {}, "mask.tiles['a,b']"),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {"-1,0": GOOD_TILE}}}, {}, "mask.tiles['-1,0']"),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {"01,0": GOOD_TILE}}}, {}, "mask.tiles['01,0']"),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {"3": GOOD_TILE}}}, {}, "mask.tiles['3']"),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {"0,0": b"\x01"}}}, {}, "mask.tiles['0,0']"),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {"0,0": "!!not base64"}}}, {}, "mask.tiles['0,0']"),
    ("semantic", {"mask": {"tile_size": 32, "tiles": {"0,0": GOOD_TILE}}}, {}, "mask.tiles['0,0']"),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {"0,0": base64.b64encode(b"\x80").decode()}}}, {},
     "mask.tiles['0,0']"),
    ("multilabel", {"classes": [1, 9]}, {"label_ids": {1, 2}}, "classes[1]"),
    ("bbox", {"shapes": [box("a", 9)]}, {"label_ids": {1, 2}}, "shapes[0].label"),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {"0,0": tile(0, r2=9)}}}, {"label_ids": {1, 2}},
     "mask.tiles['0,0']"),
    ("multiclass", {"classes": []}, {"strict_submit": True}, "classes"),
    ("multiclass", {"classes": [1, 2]}, {"strict_submit": True}, "classes"),
    ("multiclass", {"classes": [1], "shapes": []}, {"strict_submit": True}, "shapes"),
    ("bbox", {}, {"strict_submit": True}, "shapes"),
    ("bbox", {"shapes": [box("a", points=[0.1])]}, {"strict_submit": True}, "shapes[0].points"),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {}, "palette": []}}, {"strict_submit": True},
     "mask.palette"),
]


@pytest.mark.parametrize(("task_type", "annotation", "kwargs", "field"), V,
                         ids=[f"{i}-{v[3]}" for i, v in enumerate(V)])
def test_validation_names_the_field(task_type: TaskType, annotation: Any, kwargs: dict[str, Any],
                                    field: str) -> None:
    with pytest.raises(SchemaError) as exc:
        validate_annotation(annotation, task_type, **kwargs)
    assert exc.value.field == field
    assert str(exc.value).startswith(f"{field}: ")


@pytest.mark.parametrize(("task_type", "annotation", "field"), [
    ("multiclass", {"classes": []}, "classes"),
    ("multiclass", {"classes": [1, 2], "shapes": "ignored"}, "shapes"),
    ("bbox", {"shapes": [box("a", points=[0.1], note="x")]}, "shapes[0].note"),
    ("bbox", {}, "shapes"),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {"0,0": tile(0, r2=9)}, "palette": []}}, "mask.palette"),
])
def test_drafts_are_lenient_where_submits_are_strict(task_type: TaskType, annotation: dict[str, Any],
                                                     field: str) -> None:
    validate_annotation(annotation, task_type)
    with pytest.raises(SchemaError) as exc:
        validate_annotation(annotation, task_type, strict_submit=True)
    assert exc.value.field == field


def test_box_edges_tolerate_float_round_off() -> None:
    validate_annotation({"shapes": [box("a", x=0.7, w=0.3 + 1e-12)]}, "bbox", strict_submit=True)
    with pytest.raises(SchemaError):
        validate_annotation({"shapes": [box("a", x=0.7, w=0.3 + 1e-6)]}, "bbox")


@pytest.mark.parametrize(("task_type", "annotation", "kwargs"), [
    ("bbox", {"shapes": [box("a"), box("b", w=0)]}, {}),
    ("polygon", {"shapes": [poly("a", points=[0.1, 0.2])]}, {}),
    ("multilabel", {"classes": ["x"]}, {}),
    ("semantic", {"mask": {"tile_size": TS, "tiles": {"0,0": "%%%"}}}, {}),
    ("semantic", {"mask": {"tile_size": 32, "tiles": {}}}, {"replace": False}),
    ("bbox", {"shapes": [], "status": "final"}, {}),
    ("bbox", {"shapes": []}, {"origin": "robot"}),
    ("bbox", {"shapes": []}, {"author": ""}),
])
def test_a_failed_write_changes_nothing(task_type: TaskType, annotation: dict[str, Any],
                                        kwargs: dict[str, Any]) -> None:
    doc: Doc[Any] = Doc()
    for seed_type, seed in ROUND_TRIPS:
        write_annotation(doc, copy.deepcopy(seed), seed_type, origin="human", author="ann", replace=False)
    before = doc.get_update()
    fired: list[bytes] = []
    doc.observe(lambda event: fired.append(event.update))
    with pytest.raises(SchemaError):
        write_annotation(doc, annotation, task_type, **{"origin": "human", "author": "bob", **kwargs})
    assert doc.get_update() == before
    assert fired == []


def test_malformed_entries_in_the_document_are_skipped() -> None:
    doc: Doc[Any] = Doc()
    ensure_roots(doc)
    good = {k: v for k, v in box("ok").items() if k != "id"}
    with doc.transaction(origin="human"):
        shapes = doc.get("shapes", type=Map)
        shapes["ok"] = Map(good)
        shapes["nokind"] = Map({k: v for k, v in good.items() if k != "kind"})
        shapes["badlabel"] = Map({**good, "label": "cat"})
        shapes["offimage"] = Map({**good, "x": 0.9})
        shapes["poly"] = Map({k: v for k, v in poly("p").items() if k != "id"})
        shapes["flat"] = 5
        classes = doc.get("classes", type=Map)
        classes.update({"abc": True, "-1": True, "07": True, "3": False, "5": 1, "4": True})
        mask = doc.get("mask", type=Map)
        mask.update({"tile_size": TS, "0,0": base64.b64decode(tile(2)), "x,y": base64.b64decode(tile(2)),
                     "1,0": tile(2), "2,0": b"\x05\x01", "3,0": b"\x80"})
    shapes_read = read_annotation(doc, "bbox")
    assert [s["id"] for s in shapes_read["shapes"]] == ["ok"]
    assert [s["id"] for s in read_annotation(doc, "polygon")["shapes"]] == ["poly"]
    assert read_annotation(doc, "multilabel") == {"classes": [4]}
    assert read_annotation(doc, "semantic") == {"mask": {"tile_size": TS, "tiles": {"0,0": tile(2)}}}
    validate_annotation(shapes_read, "bbox", strict_submit=True)
    # Writing repairs the document: a number stored for a class flag becomes true, and with replace
    # the malformed keys go away.
    write_annotation(doc, {"classes": [5]}, "multilabel", origin="human", author="ann", replace=False)
    assert read_annotation(doc, "multilabel") == {"classes": [4, 5]}
    write_annotation(doc, read_annotation(doc, "multilabel"), "multilabel", origin="human", author="ann")
    assert doc.get("classes", type=Map).to_py() == {"4": True, "5": True}


def test_merge_refuses_a_tile_size_change_while_tiles_exist() -> None:
    doc: Doc[Any] = Doc()
    write_annotation(doc, {"mask": {"tile_size": TS, "tiles": {"0,0": tile(1)}}}, "semantic",
                     origin="human", author="ann")
    with pytest.raises(SchemaError) as exc:
        write_annotation(doc, {"mask": {"tile_size": 32, "tiles": {}}}, "semantic", origin="human",
                         author="ann", replace=False)
    assert exc.value.field == "mask.tile_size"
    new = base64.b64encode(rle_encode([3] * 32 * 32)).decode()
    write_annotation(doc, {"mask": {"tile_size": 32, "tiles": {"0,0": new}}}, "semantic", origin="human",
                     author="ann")
    assert read_annotation(doc, "semantic") == {"mask": {"tile_size": 32, "tiles": {"0,0": new}}}


def test_rle_format_is_leb128_count_value_pairs() -> None:
    assert rle_encode([0] * 300 + [5]) == bytes([0xAC, 0x02, 0x00, 0x01, 0x05])
    assert rle_encode([2**32 - 1]) == bytes([0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
    assert rle_encode(b"\x01\x01\x02") == bytes([2, 1, 1, 2])
    assert rle_encode(np.array([[7, 7], [7, 0]], dtype=np.uint8)) == bytes([3, 7, 1, 0])
    assert rle_encode([]) == b"" and rle_decode(b"", 0).size == 0


runs = st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 300)), max_size=40)


@given(runs)
def test_rle_round_trips(pairs: list[tuple[int, int]]) -> None:
    pixels = [value for value, count in pairs for _ in range(count)]
    data = rle_encode(pixels)
    assert rle_decode(data, len(pixels)).tolist() == pixels
    # Canonical: one run per maximal stretch of equal values, so equal pixels give equal bytes.
    assert rle_encode(np.array(pixels, dtype=np.uint64)) == data
    assert len(data) <= 10 * len(pairs)


@given(st.lists(st.integers(0, 3), min_size=1, max_size=500))
def test_rle_round_trips_noisy_pixels_and_refuses_a_wrong_count(pixels: list[int]) -> None:
    data = rle_encode(pixels)
    assert rle_decode(data, len(pixels)).tolist() == pixels
    with pytest.raises(ValueError):
        rle_decode(data, len(pixels) + 1)


@pytest.mark.parametrize(("data", "n"), [
    (b"", 4),            # nothing where pixels were expected
    (b"\x04", 4),        # a count without its value
    (b"\x04\x80", 4),    # ends inside a varint
    (b"\x00\x01", 0),    # zero-length run
    (b"\x03\x01", 4),    # too few pixels
    (b"\x05\x01", 4),    # too many pixels
    (b"\x04\x80\x80\x80\x80\x10", 4),  # value longer than five bytes
    (b"\x04\xff\xff\xff\xff\x1f", 4),  # value above uint32
])
def test_rle_decode_rejects_malformed_data(data: bytes, n: int) -> None:
    with pytest.raises(ValueError):
        rle_decode(data, n)


@pytest.mark.parametrize("pixels", [[-1], [2**32], [0.5, 1.0]])
def test_rle_encode_rejects_values_outside_uint32(pixels: list[Any]) -> None:
    with pytest.raises(ValueError):
        rle_encode(pixels)
