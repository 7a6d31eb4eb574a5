"""The label palette (client/src/canvas/palette.ts), run as it is in Node: label colours stay
apart in OKLab for a project's first 30 labels, a label keeps its colour when others are
added, and the text drawn on any palette colour reads at WCAG AA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.infra import run_client_check

CHECK = Path(__file__).with_name("palette_check.cjs")


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    return run_client_check(CHECK)


def test_the_first_thirty_colours_are_far_apart(figures: dict[str, Any]) -> None:
    assert figures["checked"] >= 30 and figures["threshold"] >= 0.1
    assert figures["minFor"]["30"] >= figures["threshold"]
    # Fewer labels get colours farther apart still; many more stay clearly distinct.
    assert figures["minFor"]["9"] > figures["minFor"]["30"]
    assert figures["minFor"]["60"] >= 0.07
    assert figures["distinct"] == figures["size"] >= 300


def test_labels_take_colours_by_id(figures: dict[str, Any]) -> None:
    assert figures["labelCount"] == 30 and figures["labelMin"] >= figures["threshold"]
    assert figures["sameAgain"] and figures["keepsColour"]


def test_text_on_every_colour_meets_wcag_aa(figures: dict[str, Any]) -> None:
    assert figures["textContrast"] >= 4.5
    assert figures["whiteOnBlack"] == pytest.approx(21)


def test_css_colours_parse(figures: dict[str, Any]) -> None:
    assert figures["hsl"] == pytest.approx([0, 0.5, 0])
    assert figures["rgb"] == [1, 0, 0]
