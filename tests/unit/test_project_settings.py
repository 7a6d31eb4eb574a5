from __future__ import annotations

import pytest
from pydantic import ValidationError

from server.errors import Unprocessable
from server.projects.instructions import render
from server.projects.project_settings import (
    Consensus,
    ConsensusPatch,
    Instructions,
    MlAssist,
    ProjectCreate,
    check_compatible,
    merge,
    project_name_key,
)


@pytest.mark.parametrize("body", [
    {"min": 0, "max": 2}, {"min": 1, "max": 11}, {"min": 4, "max": 3},
    {"threshold": 0.4}, {"threshold": 1.0}, {"min": "two"}, {"enabled": True, "quorum": 3},
])
def test_bad_consensus_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Consensus.model_validate(body)


def test_consensus_bounds_inclusive() -> None:
    assert Consensus(enabled=True, min=1, max=10).max == 10
    assert Consensus(enabled=True, min=3, max=3).min == 3


def test_merge_keeps_unsent_fields_and_reports_location() -> None:
    merged = merge(Consensus, {"enabled": True, "min": 2, "max": 3, "threshold": 0.5},
                   ConsensusPatch(max=5), "consensus")
    assert (merged.min, merged.max, merged.enabled) == (2, 5, True)
    with pytest.raises(Unprocessable) as exc:
        merge(Consensus, merged.model_dump(), ConsensusPatch(min=9), "consensus")
    assert exc.value.details[0]["loc"][0] == "consensus"
    assert "must not exceed max" in exc.value.message


def test_polygon_refuses_consensus_and_semantic_refuses_ml() -> None:
    check_compatible("polygon", Consensus(enabled=False), MlAssist(enabled=True))
    with pytest.raises(Unprocessable) as exc:
        check_compatible("polygon", Consensus(enabled=True), MlAssist())
    assert exc.value.code == "consensus_not_supported"
    check_compatible("semantic", Consensus(enabled=True), MlAssist(enabled=False))
    with pytest.raises(Unprocessable) as exc:
        check_compatible("semantic", Consensus(), MlAssist(enabled=True))
    assert exc.value.code == "ml_assist_not_supported"


@pytest.mark.parametrize("weights", ["relative/path.pt", "https://hub.example/w.pt", "file:///x"])
def test_backbone_weights_must_be_local_absolute(weights: str) -> None:
    with pytest.raises(ValidationError):
        MlAssist(backbone_weights=weights)
    assert MlAssist(backbone_weights="/models/resnet.pt").backbone_weights == "/models/resnet.pt"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://example.org/x", "not a url"])
def test_instruction_urls_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError):
        Instructions(url=url)  # type: ignore[arg-type]


def test_unknown_fields_and_task_types_refused() -> None:
    with pytest.raises(ValidationError):
        ProjectCreate.model_validate({"name": "p", "task_type": "keypoints"})
    with pytest.raises(ValidationError):
        ProjectCreate.model_validate({"name": "p", "task_type": "bbox", "colour": "red"})
    with pytest.raises(ValidationError):
        ProjectCreate.model_validate({"name": "p", "task_type": "bbox", "media_type": "video"})


def test_name_key_ignores_case_and_spacing() -> None:
    assert project_name_key("  My   Project ") == project_name_key("my project")


def test_instructions_are_sanitized_markdown() -> None:
    html = render(
        "# Title\n\n**bold** [ok](https://x.org) [bad](javascript:alert(1))\n\n"
        "<script>alert(1)</script><img src=x onerror=alert(1)>"
    )
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html
    assert 'href="https://x.org"' in html and 'rel="noopener noreferrer"' in html
    assert "<script" not in html and "onerror" not in html and 'href="javascript' not in html
    assert render("") == ""
