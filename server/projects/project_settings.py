"""The settings a project carries, their validation and the rules tying them together.

Rules from the product brief:
- consensus `{enabled, min, max, threshold}`: 1 <= min <= max <= 10; not for polygon
  projects; fixed once the project has started. `threshold` is the share of labelers
  that must agree, strictly more than it (0.5 = strict majority, the default).
- ML assistance `{enabled, min_labeled, precision_target, backbone_weights}`: not for
  semantic-segmentation projects; may change at any time.
- instructions: markdown text and/or an http(s) link; both may change at any time.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import AnyHttpUrl, BaseModel, Field, ValidationError, model_validator

from server.data.binding import DatasetBody
from server.errors import field_error
from server.projects.instructions import MAX_TEXT
from server.projects.label_tree import LabelNode
from server.validation import Strict, unprocessable_from

TaskType = Literal["multiclass", "multilabel", "bbox", "polygon", "semantic"]
MediaType = Literal["image"]
TASK_TYPES: tuple[str, ...] = ("multiclass", "multilabel", "bbox", "polygon", "semantic")


class Consensus(Strict):
    enabled: bool = False
    min: int = Field(2, ge=1, le=10, description="labelers each item starts with")
    max: int = Field(3, ge=1, le=10, description="most labelers an item can go to")
    threshold: float = Field(
        0.5, ge=0.5, lt=1.0, description="agreement needed: more than this share of labelers"
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> Consensus:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class ConsensusPatch(Strict):
    enabled: bool | None = None
    min: int | None = None
    max: int | None = None
    threshold: float | None = None


class MlAssist(Strict):
    enabled: bool = False
    min_labeled: int = Field(
        300, ge=1, le=500_000, description="decided items needed before the first training"
    )
    precision_target: float = Field(
        0.9, gt=0.0, le=1.0, description="prelabels are shown only above this precision"
    )
    backbone_weights: str | None = Field(
        None, max_length=4096, description="absolute path of a local weights file, or null"
    )

    @model_validator(mode="after")
    def _local_weights(self) -> MlAssist:
        w = self.backbone_weights
        if w is not None and (not w.startswith("/") or "://" in w):
            raise ValueError("backbone_weights must be an absolute path to a local file")
        return self


class MlAssistPatch(Strict):
    enabled: bool | None = None
    min_labeled: int | None = None
    precision_target: float | None = None
    backbone_weights: str | None = None


class Instructions(Strict):
    text: str = Field("", max_length=MAX_TEXT)
    url: AnyHttpUrl | None = Field(None, description="an http(s) page with the instructions")


class InstructionsPatch(Strict):
    text: str | None = Field(None, max_length=MAX_TEXT)
    url: AnyHttpUrl | None = None


class ProjectCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    media_type: MediaType = "image"
    task_type: TaskType
    labels: list[LabelNode] = Field(default_factory=list)
    instructions: Instructions = Field(default_factory=Instructions)
    consensus: Consensus = Field(default_factory=Consensus)
    ml_assist: MlAssist = Field(default_factory=MlAssist)
    dataset: DatasetBody | None = Field(
        None, description="bind the data in the same step: the project is created only if the "
        "binding succeeds (the body of PUT /api/v1/projects/{pid}/dataset)")


class ProjectPatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    media_type: MediaType | None = None
    task_type: TaskType | None = None
    instructions: InstructionsPatch | None = None
    consensus: ConsensusPatch | None = None
    ml_assist: MlAssistPatch | None = None


M = TypeVar("M", bound=BaseModel)


def merge(model: type[M], current: dict[str, Any], patch: BaseModel, loc: str) -> M:
    """Apply the fields a PATCH sent onto the stored value and validate the result."""
    merged = {**current, **patch.model_dump(exclude_unset=True, mode="json")}
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        raise unprocessable_from(exc, (loc,)) from None


def check_compatible(task_type: str, consensus: Consensus, ml_assist: MlAssist) -> None:
    """Refuse setting combinations the task type does not support."""
    if task_type == "polygon" and consensus.enabled:
        raise field_error(
            "consensus.enabled",
            "polygon (instance segmentation) projects cannot use consensus labeling",
            code="consensus_not_supported",
        )
    if task_type == "semantic" and ml_assist.enabled:
        raise field_error(
            "ml_assist.enabled",
            "semantic segmentation projects cannot use ML-assisted labeling",
            code="ml_assist_not_supported",
        )


def project_name_key(name: str) -> str:
    """Names are unique ignoring case and surrounding/inner repeated whitespace."""
    return " ".join(name.split()).casefold()
