"""The HTTP API under /api/v1: every domain's endpoints, gathered in one list."""

from __future__ import annotations

from server import meta_api
from server.accounts import auth_api, tokens_api, users_api
from server.data import binding_api, items_api, label_imports_api, table_import_api, uploads_api
from server.exports import exports_api
from server.ml import ml_api
from server.monitoring import stats_api
from server.projects import label_tree_api, members_api, projects_api
from server.routing import Endpoint
from server.work import leases_api, review_api


def all_endpoints() -> list[Endpoint]:
    """Every endpoint the server answers, in the order the OpenAPI document lists them."""
    return [
        *meta_api.ENDPOINTS,
        *auth_api.ENDPOINTS,
        *users_api.ENDPOINTS,
        *tokens_api.ENDPOINTS,
        *projects_api.ENDPOINTS,
        *members_api.ENDPOINTS,
        *label_tree_api.ENDPOINTS,
        *binding_api.ENDPOINTS,
        *uploads_api.ENDPOINTS,
        *table_import_api.ENDPOINTS,
        *label_imports_api.ENDPOINTS,
        *items_api.ENDPOINTS,
        *leases_api.ENDPOINTS,
        *review_api.ENDPOINTS,
        *stats_api.ENDPOINTS,
        *exports_api.ENDPOINTS,
        *ml_api.ENDPOINTS,
    ]
