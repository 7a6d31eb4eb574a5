"""Bad input of every kind gets a clear 4xx, stores nothing and leaves nothing behind:
JSON nested past any use, NUL characters, integers beyond 64 bits, non-finite numbers,
file names too long for a file system, a name that is both a file and a folder, and
addresses under /api/ that name nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.infra import Api, unique
from tests.integration.test_uploads import png, send, stored
from tests.reliability import Measured

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]
HUGE = "9" * 30  # beyond int64


def _raw(api: Api, method: str, path: str, body: str) -> Any:
    return api.client.request(method, path, content=body.encode(),
                              headers={"content-type": "application/json"})


def _clear_4xx(r: Any) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["code"] and err["message"]
    return str(err["code"])


@pytest.mark.reliability(
    area="Input",
    attack="JSON nested 1,000 and 100,000 deep, NaN/Infinity/1e999, and integers beyond 64 bits "
           "sent to sign-in and to API bodies.",
    promise="A clear 400/422 naming the problem; nothing stored.")
def test_json_nobody_can_use_is_refused(anon: Api, make_user: Callable[..., Api], measured: Measured) -> None:
    user = make_user()
    before = len(user.get("/api/v1/tokens").json()["tokens"])
    codes = []
    for depth in (1000, 100_000):
        deep = "[" * depth + "]" * depth
        codes.append(_clear_4xx(_raw(anon, "POST", "/api/v1/auth/login", deep)))
        codes.append(_clear_4xx(_raw(user, "POST", "/api/v1/tokens", '{"name": ' + deep + "}")))
    # Deep but well-formed objects are stopped at the API's depth limit, not by the parser.
    nested = '{"a":' * 80 + "1" + "}" * 80
    body = '{"name": "x", "task_type": "multiclass", "extra": ' + nested + "}"
    r = _raw(user, "POST", "/api/v1/projects", body)
    assert _clear_4xx(r) == "json_too_deep" and r.status_code == 422
    for number in ("NaN", "Infinity", "-Infinity", "1e999"):
        codes.append(_clear_4xx(_raw(user, "POST", "/api/v1/tokens", '{"name": ' + number + "}")))
    big = _raw(user, "PUT", "/api/v1/projects/1/members", '{"user_id": ' + HUGE + ', "role": "labeler"}')
    assert _clear_4xx(big) == "number_out_of_range"
    assert len(user.get("/api/v1/tokens").json()["tokens"]) == before
    measured(f"{len(codes) + 2} bodies refused 400/422 ({', '.join(sorted(set(codes)))}); no token stored")


@pytest.mark.reliability(
    area="Input",
    attack="A NUL character in every kind of stored string (names, emails, instructions, token "
           "names, export prefixes, label names), in path parameters and in query strings.",
    promise="422 (404 in a path) with the field named; nothing stored.")
def test_nul_characters_are_refused_everywhere(admin: Api, make_project: MakeProject,
                                                measured: Measured) -> None:
    owner, p = make_project()
    pid = p["id"]
    attempts = [
        ("POST", "/api/v1/projects", {"name": "a\u0000b", "task_type": "multiclass",
                                      "labels": [{"name": "x"}]}),
        ("POST", "/api/v1/projects", {"name": unique("ok"), "task_type": "multiclass",
                                      "labels": [{"name": "x\u0000"}]}),
        ("PATCH", f"/api/v1/projects/{pid}", {"instructions": "read\u0000me"}),
        ("PATCH", f"/api/v1/projects/{pid}", {"name": "n\u0000"}),
        ("POST", "/api/v1/tokens", {"name": "t\u0000"}),
        ("POST", f"/api/v1/projects/{pid}/exports", {"format": "jsonl", "image_url_prefix": "x\u0000"}),
        ("PATCH", "/api/v1/me", {"name": "me\u0000"}),
    ]
    found = []
    for method, path, body in attempts:
        r = owner.request(method, path, json=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == "nul_character", (path, r.text)
        found.append(r.json()["error"]["details"][0]["loc"])
    r = admin.post("/api/v1/users", {"email": "nul\u0000@colabel.test", "password": "long enough pass",
                                     "name": "n"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "nul_character"
    for path in ("/api/v1/leases/ab%00cd/submit", "/api/v1/tokens/%00"):
        r = owner.post(path, {"annotation": {}})
        _clear_4xx(r)
    for query in ("status=%00", "after=1%00", "x%00=1"):
        r = owner.get(f"/api/v1/projects/{pid}/items?{query}")
        assert r.status_code == 422, (query, r.text)
    # Nothing stored: the project is as it was, the user list has no such email.
    project = owner.get(f"/api/v1/projects/{pid}").json()["project"]
    assert project["name"] == p["name"] and "\u0000" not in str(project)
    assert "nul" not in str(admin.get("/api/v1/users?limit=1000").json())
    assert "\u0000" not in str(owner.get("/api/v1/tokens").json())
    measured(f"{len(attempts) + 1} bodies refused 422 nul_character, NUL in paths 4xx, in queries 422; "
             "nothing stored")


@pytest.mark.reliability(
    area="Input",
    attack="Integers beyond 64 bits and non-integer ids in path and query parameters, every method.",
    promise="404 for an id that names nothing (the API's JSON, never the static files' 405), 422 for "
            "a query value out of range; never 500.")
def test_ids_beyond_64_bits_and_non_integer_ids(make_project: MakeProject, measured: Measured) -> None:
    owner, p = make_project()
    pid = p["id"]
    seen: dict[str, int] = {}
    for path in (f"/api/v1/projects/{HUGE}", f"/api/v1/projects/{pid}/items/{HUGE}",
                 f"/api/v1/projects/{pid}/items/{HUGE}/media", f"/api/v1/projects/{HUGE}/members/1",
                 "/api/v1/projects/abc", "/api/v1/projects/1.5/items", "/api/v1/projects/-1"):
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            r = owner.request(method, path, json={})
            assert r.status_code in (404, 405), (method, path, r.status_code, r.text)
            assert r.json()["error"]["code"] in ("not_found", "method_not_allowed")
            if r.status_code == 405:
                assert r.headers["allow"]
            seen[f"{r.status_code}"] = seen.get(f"{r.status_code}", 0) + 1
    for query in (f"after={HUGE}", f"limit={HUGE}", f"offset={HUGE}", f"after=-{HUGE}"):
        r = owner.get(f"/api/v1/projects/{pid}/items?{query}")
        assert r.status_code == 422, (query, r.text)
    assert owner.get(f"/api/v1/projects/{pid}/stats?hours={HUGE}").status_code == 422
    assert owner.get(f"/api/v1/projects?limit=-{HUGE}").status_code == 422
    # A path that exists answers 405 (with Allow) for a method it does not have.
    r = owner.request("PUT", "/api/v1/projects")
    assert r.status_code == 405 and "POST" in r.headers["allow"]
    measured(f"answers: {seen}; out-of-range query values 422")


@pytest.mark.reliability(
    area="Input",
    attack="Uploaded a file with a 300-character name, and a batch holding both f.png and f.png/g.png.",
    promise="422 before anything is written; nothing left on disk; the same names upload "
            "normally afterwards.")
def test_upload_names_that_cannot_be_placed(make_project: MakeProject, data_dir: Path,
                                            measured: Measured) -> None:
    owner, p = make_project()
    pid = p["id"]
    long = "a" * 296 + ".png"
    r = send(owner, pid, [(long, png())])
    assert r.status_code == 422 and r.json()["error"]["code"] == "name_too_long", r.text
    r = send(owner, pid, [("f.png", png()), ("f.png/g.png", png())])
    assert r.status_code == 422 and r.json()["error"]["code"] == "path_conflict", r.text
    assert stored(data_dir, pid) == []
    assert send(owner, pid, [("f.png", png())]).status_code == 201
    # Against what is stored: a folder where a file is stored, and a file where a folder is.
    r = send(owner, pid, [("f.png/g.png", png())])
    assert r.status_code == 422 and r.json()["error"]["code"] == "path_conflict", r.text
    r = send(owner, pid, [("d2.png/x.png", png()), ("ok.png", png())])
    assert r.status_code == 201, r.text
    r = send(owner, pid, [("d2.png", png())], overwrite="true")
    assert r.status_code == 422 and r.json()["error"]["code"] == "path_conflict"
    assert stored(data_dir, pid) == ["d2.png/x.png", "f.png", "ok.png"]
    assert owner.get(f"/api/v1/projects/{pid}").json()["project"]["items"]["total"] == 3
    measured("300-character name 422 name_too_long, file/folder clash 422 path_conflict; nothing on disk")
