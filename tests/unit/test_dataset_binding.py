from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.data import binding as db
from server.errors import Unprocessable
from server.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    root = tmp_path / "root"
    (root / "images" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "escape")
    return Settings(data_dir=tmp_path, local_roots=(root,))


def test_local_folder_inside_root_is_resolved(settings: Settings) -> None:
    root = settings.local_roots[0]
    assert db.resolve_local(settings, str(root / "images" / "sub")) == root / "images" / "sub"


@pytest.mark.parametrize("rel", ["../outside", "escape", "images/../../outside", "missing"])
def test_escapes_and_missing_folders_are_refused(settings: Settings, rel: str) -> None:
    with pytest.raises(Unprocessable):
        db.resolve_local(settings, str(settings.local_roots[0] / rel))


def test_relative_path_refused(settings: Settings) -> None:
    with pytest.raises(Unprocessable):
        db.resolve_local(settings, "images")


@pytest.mark.parametrize("pattern", ["/etc/**", "../**", "a/../../b/*", "a\\b"])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(Unprocessable):
        db.check_pattern(pattern)
    db.check_pattern("images/**")
    db.check_pattern("**/*.*")


def azure(url: str, **cred: str) -> db.AzureBlobStore:
    return db.AzureBlobStore(kind="azure_blob", account_url=url, container="images",
                             **(cred or {"sas_token": "sv=1&sig=x"}))


@pytest.mark.parametrize("url", [
    "http://account.blob.core.windows.net",
    "https://169.254.169.254/",
    "https://metadata.google.internal/",
    "https://[fe80::1]/",
    "https://127.0.0.1:10000/devstoreaccount1",
    "https://10.1.2.3/devstoreaccount1",
    "https://[::ffff:127.0.0.1]/devstoreaccount1",
    "https:///nohost",
])
async def test_azure_urls_refused(settings: Settings, url: str) -> None:
    with pytest.raises(Unprocessable) as exc:
        await db.check_azure(settings, azure(url))
    assert exc.value.details[0]["loc"] == ["datastore", "account_url"]


async def test_emulator_on_loopback_allowed_only_when_configured(settings: Settings) -> None:
    from dataclasses import replace

    emu = replace(settings, azure_allow_emulator=True)
    await db.check_azure(emu, azure("http://127.0.0.1:10000/devstoreaccount1"))
    with pytest.raises(Unprocessable):
        await db.check_azure(emu, azure("http://10.0.0.5:10000/devstoreaccount1"))
    with pytest.raises(Unprocessable):
        await db.check_azure(settings, azure("http://127.0.0.1:10000/devstoreaccount1"))


KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.mark.parametrize("conn", [
    f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={KEY};"
    "BlobEndpoint=http://127.0.0.1:10000/a",
    f"AccountName=a;AccountKey={KEY};BlobEndpoint=https://169.254.169.254/a",
    "BlobEndpoint=https://10.0.0.7/a;SharedAccessSignature=sv=1&sig=x",
    f"AccountName=a;AccountKey={KEY};BlobEndpoint=https://a.blob.core.windows.net;"
    "BlobSecondaryEndpoint=https://[::1]/a",
    "UseDevelopmentStorage=true",
])
async def test_connection_string_endpoints_are_vetted_like_account_urls(
    settings: Settings, conn: str,
) -> None:
    store = azure("https://a.blob.core.windows.net", connection_string=conn)
    with pytest.raises(Unprocessable) as exc:
        await db.check_azure(settings, store)
    assert exc.value.code == "address_not_allowed"
    assert exc.value.details[0]["loc"] == ["datastore", "connection_string"]
    assert KEY not in exc.value.message and "sig=x" not in exc.value.message


async def test_a_public_connection_string_passes(settings: Settings) -> None:
    await db.check_azure(settings, azure(
        "https://a.blob.core.windows.net",
        connection_string=f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={KEY};"
                          "EndpointSuffix=core.windows.net"))


def test_azure_needs_exactly_one_credential() -> None:
    base = {"kind": "azure_blob", "account_url": "https://a.blob.core.windows.net",
            "container": "images"}
    with pytest.raises(ValueError):
        db.DatasetBody.model_validate({"datastore": base})
    with pytest.raises(ValueError):
        db.DatasetBody.model_validate(
            {"datastore": {**base, "sas_token": "s", "account_key": "k"}})
    ok = db.DatasetBody.model_validate({"datastore": {**base, "sas_token": "sv=1&sig=x"}})
    shown = db.public({"datastore": ok.datastore.model_dump(exclude_none=True),
                       "pattern": ok.pattern})
    assert shown is not None and "sig=x" not in str(shown)
    assert shown["datastore"]["credential"] == "sas_token"
