"""Request-body models share one strict base; pydantic errors become clear 422s."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import Unprocessable


class Strict(BaseModel):
    """Unknown fields are refused rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _loc(parts: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in parts) or "body"


def unprocessable_from(exc: ValidationError, prefix: tuple[str, ...] = ()) -> Unprocessable:
    """A 422 listing every problem; `prefix` places a nested model's errors in the body."""
    details = [
        {"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    first = details[0]
    message = f"{_loc(tuple(first['loc']))}: {first['msg']}"
    if len(details) > 1:
        message += f" (and {len(details) - 1} more)"
    return Unprocessable(message, details=details)
