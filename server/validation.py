"""Request-body models share one strict base; pydantic errors become clear 422s."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from server.errors import Unprocessable


class Strict(BaseModel):
    """Unknown fields are refused rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# Multipart form fields carry booleans as text; HTML checkboxes send "on".
_TRUE = ("1", "true", "yes", "on")


def form_flag(value: str) -> bool:
    """A boolean form field or query parameter: 1, true, yes or on (any case) are true."""
    return value.lower() in _TRUE


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


# What any JSON body may hold. Deeper nesting has no use in the API and would exhaust the
# parser's recursion; NUL cannot be stored in a Postgres text; integers must fit a bigint.
MAX_JSON_DEPTH = 64
INT64_MAX = 2**63 - 1


def check_json(data: Any) -> None:
    """Refuse, with a 422 naming the place, what no endpoint can store: nesting deeper than
    MAX_JSON_DEPTH, NUL characters in strings or keys, integers beyond 64 bits."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_JSON_DEPTH:
            raise _bad(loc, f"nested deeper than {MAX_JSON_DEPTH} levels", "json_too_deep")
        if isinstance(value, str):
            if "\x00" in value:
                raise _bad(loc, "contains a NUL character", "nul_character")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not -INT64_MAX - 1 <= value <= INT64_MAX:
                raise _bad(loc, "is beyond the 64-bit integer range", "number_out_of_range")
        elif isinstance(value, dict):
            for k, v in value.items():
                if "\x00" in k:
                    raise _bad(loc, "has a key with a NUL character", "nul_character")
                stack.append((v, (*loc, k)))
        elif isinstance(value, list):
            stack.extend((v, (*loc, i)) for i, v in enumerate(value))


def _bad(loc: tuple[Any, ...], problem: str, code: str) -> Unprocessable:
    where = _loc(loc)
    return Unprocessable(f"{where}: {problem}", code=code,
                         details=[{"loc": list(loc), "msg": problem, "type": code}])
