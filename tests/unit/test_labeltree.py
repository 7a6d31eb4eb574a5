from __future__ import annotations

from typing import Any

import pytest

from server.errors import Unprocessable
from server.projects.label_tree import HOTKEYS, LabelNode, flatten, tree_json


def chain(depth: int) -> list[LabelNode]:
    node: dict[str, Any] = {"name": f"L{depth}"}
    for d in range(depth - 1, 0, -1):
        node = {"name": f"L{d}", "children": [node]}
    return [LabelNode.model_validate(node)]


def test_six_levels_are_accepted_in_preorder() -> None:
    flat = flatten(chain(6))
    assert [f.depth for f in flat] == [1, 2, 3, 4, 5, 6]
    assert [f.parent for f in flat] == [None, 0, 1, 2, 3, 4]


def test_seventh_level_is_refused_with_its_location() -> None:
    with pytest.raises(Unprocessable) as exc:
        flatten(chain(7))
    assert exc.value.code == "label_tree_too_deep"
    assert "at most 6 levels" in exc.value.message
    assert exc.value.details[0]["loc"] == ["labels", 0, *["children", 0] * 6]


def test_sibling_names_unique_ignoring_case_but_cousins_may_share() -> None:
    tree = [LabelNode(name="A", children=[LabelNode(name="x")]),
            LabelNode(name="B", children=[LabelNode(name="x")])]
    assert len(flatten(tree)) == 4
    with pytest.raises(Unprocessable) as exc:
        flatten([LabelNode(name="Cat"), LabelNode(name="cAT")])
    assert exc.value.code == "duplicate_label"


@pytest.mark.parametrize("name", ["a/b", "<script>x</script>", "<img src=x>", "tab\x07"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(Unprocessable):
        flatten([LabelNode(name=name)])


def test_plain_comparisons_are_fine_in_names() -> None:
    assert flatten([LabelNode(name="size < 5mm"), LabelNode(name="Ünïcødé, with comma")])


def test_duplicate_ids_refused() -> None:
    with pytest.raises(Unprocessable):
        flatten([LabelNode(id=3, name="a"), LabelNode(id=3, name="b")])


def test_tree_json_paths_and_hotkeys_leaves_first() -> None:
    rows = [{"id": 1, "parent_id": None, "name": "Animal", "depth": 1, "used_at": None}]
    rows += [{"id": 1 + i, "parent_id": 1, "name": f"C{i}", "depth": 2, "used_at": None}
             for i in range(1, 11)]
    tree = tree_json(rows)
    kids = tree[0]["children"]
    assert kids[0]["path"] == "Animal/C1"
    # The ten leaves take 1-9 and 0; the group comes after them.
    assert [k["hotkey"] for k in kids] == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
    assert tree[0]["path"] == "Animal" and tree[0]["hotkey"] == "q"


def test_tree_json_hotkeys_run_out_after_the_letters() -> None:
    rows = [{"id": i, "parent_id": None, "name": f"L{i}", "depth": 1, "used_at": None}
            for i in range(1, 41)]
    keys = [n["hotkey"] for n in tree_json(rows)]
    assert keys[:len(HOTKEYS)] == list(HOTKEYS) and len(set(HOTKEYS)) == len(HOTKEYS) > 20
    assert keys[len(HOTKEYS):] == [None] * (40 - len(HOTKEYS))
    # None of them is a key the labeling screens use for something else.
    assert not set(HOTKEYS) & set("abefhpvr")
