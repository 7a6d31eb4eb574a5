"""Label hotkeys in the browser app (client/src/pages/labeling/hotkeys.ts), run as it is in
Node: the same key sequence as the server, leaves before groups, owners' keys first, keys
read by position, and how the shortcut sheet names them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.projects.label_tree import HOTKEYS
from tests.infra import run_client_check

CHECK = Path(__file__).with_name("hotkeys_check.cjs")


@pytest.fixture(scope="module")
def found() -> dict[str, Any]:
    return run_client_check(CHECK)


def test_the_browser_and_the_server_use_one_sequence(found: dict[str, Any]) -> None:
    assert found["sequence"] == HOTKEYS


def test_leaves_first_then_groups_then_none(found: dict[str, Any]) -> None:
    keys = found["leavesFirst"]
    assert keys[1:3] == ["1", "2"]            # the group's children, not the group, get 1 and 2
    assert keys[3:29] == list(HOTKEYS[2:28])  # the flat leaves take the rest in order
    assert keys[0] is None and keys[29:] == [None] * 4  # 32 leaves for 28 keys: the group gets none


def test_owners_keys_are_kept_and_skipped(found: dict[str, Any]) -> None:
    assert found["fixed"] == ["q", "2", "1", "3"]


def test_keys_are_read_by_position(found: dict[str, Any]) -> None:
    # Digit1; Shift+2 (@); Shift+Q; Q on a Cyrillic layout; Numpad0; B and A are tool keys;
    # Space is none; a bare "w" with no code (a synthetic event) still counts.
    assert found["keys"] == ["1", "2", "q", "q", "0", None, None, None, "w"]


def test_the_sheet_names_the_keys_in_use(found: dict[str, Any]) -> None:
    assert found["ranges"] == ["1–9, 0, Q W T Y U I O S D G J K L Z X C N M", "1–4", "1, Z", "none"]
