"""The HTTP API under /api/v1, one module per resource."""

from __future__ import annotations

from ..routing import Endpoint
from . import (
    auth,
    dataset,
    exports,
    imports,
    items,
    label_imports,
    labels,
    members,
    meta,
    ml,
    projects,
    review,
    stats,
    tasks,
    tokens,
    uploads,
    users,
)


def endpoints() -> list[Endpoint]:
    """Every endpoint the server answers, in the order the OpenAPI document lists them."""
    return [
        *meta.ENDPOINTS,
        *auth.ENDPOINTS,
        *users.ENDPOINTS,
        *tokens.ENDPOINTS,
        *projects.ENDPOINTS,
        *members.ENDPOINTS,
        *labels.ENDPOINTS,
        *dataset.ENDPOINTS,
        *uploads.ENDPOINTS,
        *imports.ENDPOINTS,
        *label_imports.ENDPOINTS,
        *items.ENDPOINTS,
        *tasks.ENDPOINTS,
        *review.ENDPOINTS,
        *stats.ENDPOINTS,
        *exports.ENDPOINTS,
        *ml.ENDPOINTS,
    ]
