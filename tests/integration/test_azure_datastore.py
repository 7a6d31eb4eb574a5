"""AzureBlobDatastore against the Azurite emulator: listing, reads, credentials and failures."""

from __future__ import annotations

import base64
import os
import random
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient

import tests.azurite
from server.data.datastores.azure import AzureBlobDatastore, account_name_from_url
from server.data.datastores.base import DatastoreError, KeyNotFound, UnsafeKey
from server.outbound import OutboundPolicy
from tests.azurite import AzuriteInfo, make_container, run_azurite, sas_for
from tests.infra import free_port

SEED = {
    "data/b.jpg": b"bee",
    "data/a/2.png": b"two",
    "data/a/10.png": b"ten!",
    "data/a/sub/x.jpg": b"x" * 100,
    "data/c.dcm": b"dicom",
    "data/empty.jpg": b"",
    "data/a/": b"",  # directory markers, as written by some upload tools
    "data/markeronly/": b"",
    "datax/sibling.jpg": b"not under data/",
    "other/z.jpg": b"outside the store prefix",
    "top.jpg": b"top",
}
KEYS = ["a/10.png", "a/2.png", "a/sub/x.jpg", "b.jpg", "c.dcm", "empty.jpg"]
# Azurite listens on loopback, which only this opt-in lets the datastore reach.
EMULATOR = OutboundPolicy(allow_loopback=True)


def container_name(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


async def collect(store: AzureBlobDatastore, prefix: str = "") -> list[str]:
    return [k async for k in store.list_keys(prefix)]


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteInfo]:
    with run_azurite(tmp_path_factory.mktemp("azurite")) as info:
        yield info


@pytest.fixture(scope="module")
async def photos(azurite: AzuriteInfo) -> str:
    name = container_name("photos")
    await make_container(azurite, name, SEED)
    return name


def keyed(info: AzuriteInfo, container: str, prefix: str = "data", **kw: Any) -> AzureBlobDatastore:
    return AzureBlobDatastore(info.account_url, container, prefix, account_key=info.account_key,
                              outbound=EMULATOR, **kw)


async def test_lists_in_order_and_strips_the_store_prefix(azurite: AzuriteInfo, photos: str) -> None:
    async with keyed(azurite, photos) as store:
        assert await collect(store) == KEYS
    # A prefix given with slashes is the same folder, and "data" never matches "datax/".
    async with keyed(azurite, photos, "/data/") as store:
        assert await collect(store) == KEYS


async def test_without_a_store_prefix_keys_are_full_blob_names(azurite: AzuriteInfo, photos: str) -> None:
    async with keyed(azurite, photos, "") as store:
        keys = await collect(store)
    expected = sorted(k for k in SEED if not k.endswith("/"))
    assert keys == expected
    assert "top.jpg" in keys and "other/z.jpg" in keys


async def test_lists_a_sub_folder(azurite: AzuriteInfo, photos: str) -> None:
    async with keyed(azurite, photos) as store:
        assert await collect(store, "a") == ["a/10.png", "a/2.png", "a/sub/x.jpg"]
        assert await collect(store, "a/") == ["a/10.png", "a/2.png", "a/sub/x.jpg"]
        assert await collect(store, "a/sub") == ["a/sub/x.jpg"]
        # A folder, not a string prefix: "b" must not match "b.jpg".
        assert await collect(store, "b") == []
        assert await collect(store, "markeronly") == []
        assert await collect(store, "nothing-here") == []


async def test_directory_markers_are_skipped(azurite: AzuriteInfo, photos: str) -> None:
    async with ContainerClient.from_connection_string(azurite.connection_string, photos) as raw:
        raw_names = [n async for n in raw.list_blob_names(name_starts_with="data/")]
    assert "data/a/" in raw_names and "data/markeronly/" in raw_names  # the markers really exist
    async with keyed(azurite, photos) as store:
        keys = await collect(store)
    assert not [k for k in keys if k.endswith("/") or k == ""]
    assert "markeronly" not in "".join(keys)


async def test_read_and_head(azurite: AzuriteInfo, photos: str) -> None:
    async with ContainerClient.from_connection_string(azurite.connection_string, photos) as raw:
        props = await raw.get_blob_client("data/a/sub/x.jpg").get_blob_properties()
    async with keyed(azurite, photos) as store:
        info = await store.head("a/sub/x.jpg")
        assert info.key == "a/sub/x.jpg"
        assert info.size == 100
        assert info.etag and '"' not in info.etag
        assert info.etag == props.etag.strip('"')
        assert isinstance(info.modified, datetime) and info.modified.tzinfo is not None
        assert await store.read("a/sub/x.jpg", max_bytes=100) == b"x" * 100
        assert await store.read("b.jpg", max_bytes=1000) == b"bee"
        assert await store.read("empty.jpg", max_bytes=0) == b""
        assert (await store.head("empty.jpg")).size == 0


async def test_read_refuses_blobs_over_max_bytes(azurite: AzuriteInfo, photos: str) -> None:
    async with keyed(azurite, photos) as store:
        with pytest.raises(DatastoreError, match="100 bytes") as exc:
            await store.read("a/sub/x.jpg", max_bytes=99)
    assert not isinstance(exc.value, KeyNotFound)


async def test_missing_keys_raise_key_not_found(azurite: AzuriteInfo, photos: str) -> None:
    async with keyed(azurite, photos) as store:
        with pytest.raises(KeyNotFound):
            await store.head("nope.jpg")
        with pytest.raises(KeyNotFound):
            await store.read("nope.jpg", max_bytes=1000)
        # Keys are relative to the store prefix: "other/z.jpg" means data/other/z.jpg.
        with pytest.raises(KeyNotFound):
            await store.read("other/z.jpg", max_bytes=1000)
        # A directory marker is not a readable key either.
        with pytest.raises(KeyNotFound):
            await store.head("a")


@pytest.mark.parametrize(
    "key", ["../other/z.jpg", "a/../../top.jpg", "/b.jpg", "a\\b.jpg", "a\x00.jpg", "..", ""]
)
async def test_unsafe_keys_are_refused_before_any_request(key: str) -> None:
    # Nothing listens on this port: a request would fail with a plain DatastoreError, not UnsafeKey.
    url = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    async with AzureBlobDatastore(url, "photos", "data", sas_token="sv=x&sig=y") as store:
        with pytest.raises(UnsafeKey):
            await store.head(key)
        with pytest.raises(UnsafeKey):
            await store.read(key, max_bytes=10)
        if key:
            with pytest.raises(UnsafeKey):
                await collect(store, key)


@pytest.mark.parametrize(
    "kind", ["account_key", "sas_token", "sas_token_with_question_mark", "connection_string"]
)
async def test_each_credential_kind_works(azurite: AzuriteInfo, photos: str, kind: str) -> None:
    credential: dict[str, Any] = {
        "account_key": {"account_key": azurite.account_key},
        "sas_token": {"sas_token": sas_for(azurite, photos)},
        "sas_token_with_question_mark": {"sas_token": "?" + sas_for(azurite, photos)},
        "connection_string": {"connection_string": azurite.connection_string},
    }[kind]
    async with AzureBlobDatastore(azurite.account_url, photos, "data", outbound=EMULATOR,
                                  **credential) as store:
        await store.check_access()
        assert await collect(store) == KEYS
        assert await store.read("c.dcm", max_bytes=10) == b"dicom"
        assert (await store.head("b.jpg")).size == 3


async def test_from_binding(azurite: AzuriteInfo, photos: str) -> None:
    binding = {"kind": "azure_blob", "account_url": azurite.account_url, "container": photos,
               "prefix": "data/a", "sas_token": sas_for(azurite, photos)}
    store = AzureBlobDatastore.from_binding(binding, EMULATOR)
    try:
        assert await collect(store) == ["10.png", "2.png", "sub/x.jpg"]
    finally:
        await store.close()
    with pytest.raises(ValueError, match="exactly one"):
        AzureBlobDatastore.from_binding({**binding, "account_key": azurite.account_key})
    with pytest.raises(ValueError, match="exactly one"):
        AzureBlobDatastore.from_binding({k: v for k, v in binding.items() if k != "sas_token"})


async def test_read_only_sas_can_read_but_not_list(azurite: AzuriteInfo, photos: str) -> None:
    async with AzureBlobDatastore(azurite.account_url, photos, "data", outbound=EMULATOR,
                                  sas_token=sas_for(azurite, photos, permission="r")) as store:
        assert await store.read("b.jpg", max_bytes=10) == b"bee"
        with pytest.raises(DatastoreError, match="access denied"):
            await store.check_access()
        with pytest.raises(DatastoreError, match="access denied"):
            await collect(store)


async def test_wrong_account_key_is_reported_without_the_key(azurite: AzuriteInfo, photos: str) -> None:
    wrong = base64.b64encode(os.urandom(64)).decode()
    async with AzureBlobDatastore(azurite.account_url, photos, "data", account_key=wrong,
                                  outbound=EMULATOR) as store:
        with pytest.raises(DatastoreError) as checked:
            await store.check_access()
        with pytest.raises(DatastoreError) as listed:
            await collect(store)
        with pytest.raises(DatastoreError) as headed:
            await store.head("b.jpg")
    for exc in (checked.value, listed.value, headed.value):
        assert type(exc) is DatastoreError
        assert "authentication failed" in str(exc) and photos in str(exc)
        assert wrong not in str(exc) and wrong not in repr(exc)
        assert exc.__cause__ is None and exc.__suppress_context__


async def test_malformed_credentials_are_refused_without_echoing_them(azurite: AzuriteInfo) -> None:
    with pytest.raises(DatastoreError, match="base64") as bad_key:
        AzureBlobDatastore(azurite.account_url, "photos", account_key="not!base64?secret")
    assert "secret" not in str(bad_key.value)
    with pytest.raises(DatastoreError, match="malformed") as bad_conn:
        AzureBlobDatastore(azurite.account_url, "photos", connection_string="garbage-secret-value")
    assert "secret" not in str(bad_conn.value)


async def test_missing_container(azurite: AzuriteInfo) -> None:
    missing = container_name("missing")
    async with keyed(azurite, missing) as store:
        with pytest.raises(DatastoreError, match="does not exist") as checked:
            await store.check_access()
        with pytest.raises(DatastoreError, match="does not exist") as listed:
            await collect(store)
        with pytest.raises(DatastoreError, match="does not exist") as headed:
            await store.head("b.jpg")
    # A missing container is a broken datastore, not a missing file.
    for exc in (checked.value, listed.value, headed.value):
        assert not isinstance(exc, KeyNotFound)
        assert missing in str(exc)


async def test_unreachable_account(azurite: AzuriteInfo) -> None:
    url = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    async with AzureBlobDatastore(url, "photos", account_key=azurite.account_key,
                                  outbound=EMULATOR) as store:
        with pytest.raises(DatastoreError, match="could not reach") as exc:
            await store.check_access()
    assert azurite.account_key not in str(exc.value)


async def test_only_the_opt_in_lets_the_datastore_reach_loopback(azurite: AzuriteInfo, photos: str) -> None:
    by_name = azurite.account_url.replace("127.0.0.1", "localhost")
    for url in (azurite.account_url, by_name):
        async with AzureBlobDatastore(url, photos, "data", account_key=azurite.account_key) as store:
            with pytest.raises(DatastoreError, match="could not reach"):
                await store.check_access()
            with pytest.raises(DatastoreError, match="could not reach"):
                await collect(store)
        async with AzureBlobDatastore(url, photos, "data", account_key=azurite.account_key,
                                      outbound=EMULATOR) as store:
            assert await collect(store) == KEYS


def test_missing_azurite_says_to_run_npm_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tests.azurite, "AZURITE_BIN", tmp_path / "no" / "azurite-blob")
    with pytest.raises(RuntimeError, match="npm install"):
        with run_azurite(tmp_path):
            pass


def test_account_name_from_url() -> None:
    assert account_name_from_url("https://myacct.blob.core.windows.net") == "myacct"
    assert account_name_from_url("https://MyAcct.blob.core.chinacloudapi.cn/") == "myacct"
    assert account_name_from_url("http://127.0.0.1:10000/devstoreaccount1") == "devstoreaccount1"
    with pytest.raises(DatastoreError, match="account name"):
        account_name_from_url("https://storage.example.com")


async def test_lists_two_thousand_blobs_across_pages_in_order(azurite: AzuriteInfo) -> None:
    name = container_name("many")
    # Unpadded numbers: Azure's lexicographic order ("img/10.jpg" < "img/2.jpg") must come through as is.
    blobs = {f"img/{i}.jpg": str(i).encode() for i in range(2000)}
    shuffled = list(blobs.items())
    random.Random(7).shuffle(shuffled)
    await make_container(azurite, name, dict(shuffled))
    expected = sorted(k.removeprefix("img/") for k in blobs)
    assert expected[:3] == ["0.jpg", "1.jpg", "10.jpg"]
    for page_size in (300, 5000):
        async with keyed(azurite, name, "img", page_size=page_size) as store:
            keys = await collect(store)
        assert len(keys) == 2000, page_size
        assert keys == expected, page_size
