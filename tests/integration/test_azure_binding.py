"""A project bound to an Azure Blob container (the Azurite emulator), through the API."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from azure.storage.blob.aio import ContainerClient
from PIL import Image

from tests.azurite import AzuriteInfo, make_container, sas_for
from tests.infra import Api, unique

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]


def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), color).save(buf, "PNG")
    return buf.getvalue()


def store_body(info: AzuriteInfo, container: str, **cred: str) -> dict[str, Any]:
    return {"datastore": {"kind": "azure_blob", "account_url": info.account_url,
                          "container": container, "prefix": "set1/", **cred},
            "pattern": "**/*.*"}


async def test_bind_ingest_render_refresh_and_secrets_never_returned(
    azurite: AzuriteInfo, make_project: MakeProject,
) -> None:
    container = unique("c").replace("-", "")[:20]
    await make_container(azurite, container, {
        "set1/a.png": png((255, 0, 0)), "set1/sub/b.png": png((0, 255, 0)),
        "set1/readme.txt": b"hi", "other/c.png": png((0, 0, 255)),
    })
    owner, p = make_project()
    pid = p["id"]
    sas = sas_for(azurite, container)
    r = owner.put(f"/api/v1/projects/{pid}/dataset", store_body(azurite, container, sas_token=sas))
    assert r.status_code == 200, r.text
    assert r.json()["ingest"]["added"] == 2 and r.json()["ingest"]["skipped"] == 1
    for payload in (r.text, owner.get(f"/api/v1/projects/{pid}").text,
                    owner.get("/api/v1/projects").text):
        assert "sig=" not in payload and sas not in payload
    assert r.json()["project"]["dataset"]["datastore"]["credential"] == "sas_token"
    listing = owner.get(f"/api/v1/projects/{pid}/items").json()["items"]
    assert [i["key"] for i in listing] == ["a.png", "sub/b.png"]
    media = owner.get(f"/api/v1/projects/{pid}/items/{listing[0]['id']}/media")
    assert media.status_code == 200 and media.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(media.content)) as img:
        assert img.getpixel((0, 0)) == (255, 0, 0)
    # Refresh sees a new blob and a deleted one.
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    async with ContainerClient.from_connection_string(azurite.connection_string, container) as cc:
        await cc.upload_blob("set1/new.png", png((1, 1, 1)))
        await cc.delete_blob("set1/sub/b.png")
    res = owner.post(f"/api/v1/projects/{pid}/refresh").json()["ingest"]
    assert (res["added"], res["missing"]) == (1, 1)
    gone = owner.get(f"/api/v1/projects/{pid}/items/{listing[1]['id']}/media")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "media_missing"
    # A rotated credential is accepted after the start; a different container is not.
    r = owner.put(f"/api/v1/projects/{pid}/dataset",
                  store_body(azurite, container, account_key=azurite.account_key))
    assert r.status_code == 200 and r.json()["project"]["dataset"]["datastore"]["credential"] == "account_key"
    r = owner.put(f"/api/v1/projects/{pid}/dataset",
                  store_body(azurite, "another", account_key=azurite.account_key))
    assert r.status_code == 409


async def test_bad_credentials_and_targets_are_refused(azurite: AzuriteInfo,
                                                       make_project: MakeProject) -> None:
    container = unique("d").replace("-", "")[:20]
    await make_container(azurite, container, {"set1/a.png": png((3, 3, 3))})
    owner, p = make_project()
    url = f"/api/v1/projects/{p['id']}/dataset"
    wrong = "QUJD" * 22
    r = owner.put(url, store_body(azurite, container, account_key=wrong))
    assert r.status_code == 422 and r.json()["error"]["code"] == "datastore_error"
    assert wrong not in r.text
    r = owner.put(url, {"datastore": {"kind": "azure_blob", "account_url": "https://169.254.169.254",
                                      "container": "imgs", "sas_token": "x"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "address_not_allowed"
    r = owner.put(url, {"datastore": {"kind": "azure_blob",
                                      "account_url": "http://10.1.2.3:10000/devstoreaccount1",
                                      "container": "imgs", "sas_token": "x"}})
    assert r.status_code == 422
    assert owner.get(f"/api/v1/projects/{p['id']}").json()["project"]["dataset"] is None
