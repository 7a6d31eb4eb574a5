"""The HTTP API under /api/v1: every domain's endpoints, gathered in one list."""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType

from server import meta_api
from server.accounts import auth_api, invites_api, tokens_api, users_api
from server.data import binding_api, items_api, label_imports_api, table_import_api, uploads_api
from server.exports import exports_api
from server.jobs import jobs_api
from server.ml import ml_api
from server.monitoring import stats_api
from server.projects import label_tree_api, members_api, projects_api
from server.routing import Endpoint
from server.work import corrections_api, item_actions_api, leases_api, review_api

# Each HTTP module under the API resource name its operations carry in the OpenAPI
# document (`post_tasks_submit`): names clients generate code from, so they stay put
# whatever the modules are called.
RESOURCES: list[tuple[str, ModuleType]] = [
    ("meta", meta_api),
    ("auth", auth_api),
    ("users", users_api),
    ("invites", invites_api),
    ("tokens", tokens_api),
    ("projects", projects_api),
    ("members", members_api),
    ("labels", label_tree_api),
    ("dataset", binding_api),
    ("uploads", uploads_api),
    ("imports", table_import_api),
    ("label_imports", label_imports_api),
    ("items", items_api),
    ("item_actions", item_actions_api),
    ("tasks", leases_api),
    ("history", corrections_api),
    ("review", review_api),
    ("stats", stats_api),
    ("exports", exports_api),
    ("jobs", jobs_api),
    ("ml", ml_api),
]


def all_endpoints() -> list[Endpoint]:
    """Every endpoint the server answers, in the order the OpenAPI document lists them."""
    return [replace(endpoint, resource=name)
            for name, module in RESOURCES for endpoint in module.ENDPOINTS]
