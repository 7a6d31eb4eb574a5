from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.infra import Api


def test_openapi_document_describes_bodies_and_errors(anon: Api) -> None:
    doc = anon.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    create = doc["paths"]["/api/v1/projects"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) >= {"name", "task_type", "labels", "instructions",
                                         "consensus", "ml_assist"}
    assert "422" in create["responses"] and "Error" in doc["components"]["schemas"]
    params = doc["paths"]["/api/v1/projects/{pid}"]["get"]["parameters"]
    assert params == [{"name": "pid", "in": "path", "required": True,
                       "schema": {"type": "integer"}}]


def test_unknown_routes_and_methods_use_the_error_shape(anon: Api, make_user: Callable[..., Api]) -> None:
    r = anon.get("/api/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    user = make_user()
    r = user.request("PUT", "/api/v1/projects")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    # A non-integer id never reaches a handler.
    assert user.get("/api/v1/projects/abc").status_code == 404


def test_unknown_fields_rejected_with_details(make_user: Callable[..., Api]) -> None:
    user = make_user()
    r = user.post("/api/v1/tokens", {"name": "x", "scope": "all"})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["details"][0]["loc"] == ["scope"] and "scope" in err["message"]


def test_oversized_body_is_413(make_user: Callable[..., Api]) -> None:
    user = make_user()
    r = user.client.post("/api/v1/projects", content=b"{" + b" " * (3 * 1024 * 1024) + b"}",
                         headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_health_and_readiness(anon: Api) -> None:
    assert anon.get("/healthz").json() == {"status": "ok"}
    ready = anon.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["checks"] == {"postgres": {"ok": True}, "redis": {"ok": True}}


def test_root_serves_a_page(server: str) -> None:
    r = httpx.get(server + "/")
    assert r.status_code == 200 and "Colabel" in r.text


def test_paging_parameters_are_validated_and_clamped(make_user: Callable[..., Api]) -> None:
    user = make_user()
    for i in range(3):
        assert user.post("/api/v1/projects", {"name": f"page-{user.id}-{i}",
                                              "task_type": "bbox"}).status_code == 201
    r = user.get("/api/v1/projects?limit=abc")
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == ["limit"]
    first = user.get("/api/v1/projects?limit=2").json()["projects"]
    rest = user.get("/api/v1/projects?limit=2&offset=2").json()["projects"]
    assert len(first) == 2 and len(rest) == 1
    assert len(user.get("/api/v1/projects?limit=0").json()["projects"]) == 1
