"""Prelabels: what of a prediction is shown, how it goes into a document, and what counts as
accepted unchanged."""

from __future__ import annotations

from pycrdt import Doc, Map

from collab import schema
from server.ml.prelabels import accepted_unchanged, prelabel_from, write_prelabel


def test_only_confident_predictions_become_prelabels() -> None:
    scores = {"classes": {7: 0.95, 8: 0.04, 9: 0.01}}
    assert prelabel_from(scores, "multiclass", 0.9, 3) == {"classes": [7], "confidence": {"7": 0.95}}
    assert prelabel_from(scores, "multiclass", 0.96, 3) == {}
    multi = {"classes": {7: 0.95, 8: 0.91, 9: 0.2}}
    assert prelabel_from(multi, "multilabel", 0.9, 3)["classes"] == [7, 8]
    boxes = {"boxes": [{"label": 4, "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4, "confidence": 0.8},
                       {"label": 5, "x": 0.5, "y": 0.5, "w": 0.1, "h": 0.1, "confidence": 0.3}]}
    got = prelabel_from(boxes, "bbox", 0.5, 2)
    shown = [(s["id"], s["label"], s["source"], s["confidence"]) for s in got["shapes"]]
    assert shown == [("m2-0", 4, "model", 0.8)]


def test_suggested_classes_are_not_chosen_until_accepted() -> None:
    doc: Doc = Doc()
    schema.ensure_roots(doc)
    write_prelabel(doc, {"classes": [7], "confidence": {"7": 0.93}}, "multiclass")
    assert schema.read_annotation(doc, "multiclass") == {"classes": []}
    classes = doc.get("classes", type=Map)
    assert classes["7"] == 0.93
    classes["7"] = True  # the labeler accepts it
    assert schema.read_annotation(doc, "multiclass") == {"classes": [7]}


def test_model_shapes_are_written_as_model_suggestions() -> None:
    doc: Doc = Doc()
    schema.ensure_roots(doc)
    box = {"label": 4, "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4, "confidence": 0.8}
    prelabel = prelabel_from({"boxes": [box]}, "bbox", 0.5, 1)
    write_prelabel(doc, prelabel, "bbox")
    [shape] = schema.read_annotation(doc, "bbox")["shapes"]
    assert shape["source"] == "model" and shape["confidence"] == 0.8 and shape["id"] == "m1-0"


def test_accepted_unchanged() -> None:
    cls = {"classes": [7], "confidence": {"7": 0.9}}
    assert accepted_unchanged(cls, {"classes": [7]})
    assert not accepted_unchanged(cls, {"classes": [8]})
    box = {"id": "m1-0", "kind": "box", "label": 4, "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4}
    pre = {"shapes": [{**box, "source": "model", "confidence": 0.8}]}
    assert accepted_unchanged(pre, {"shapes": [{**box, "source": "human"}]})
    assert not accepted_unchanged(pre, {"shapes": [{**box, "x": 0.11}]})
    assert not accepted_unchanged(pre, {"shapes": [box, {**box, "id": "mine"}]})
    assert not accepted_unchanged(pre, {"shapes": [{**box, "label": 5}]})
