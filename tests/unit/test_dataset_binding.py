from __future__ import annotations

import os
from pathlib import Path

import pytest

from server import dataset_binding as db
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


@pytest.mark.parametrize("url", [
    "http://account.blob.core.windows.net",
    "https://169.254.169.254/",
    "https://metadata.google.internal/",
    "https://[fe80::1]/",
    "https://127.0.0.1:10000/devstoreaccount1",
    "https:///nohost",
])
async def test_azure_urls_refused(settings: Settings, url: str) -> None:
    with pytest.raises(Unprocessable):
        await db.check_account_url(settings, url)


async def test_emulator_on_loopback_allowed_only_when_configured(settings: Settings) -> None:
    from dataclasses import replace

    emu = replace(settings, azure_allow_emulator=True)
    await db.check_account_url(emu, "http://127.0.0.1:10000/devstoreaccount1")
    with pytest.raises(Unprocessable):
        await db.check_account_url(emu, "http://10.0.0.5:10000/devstoreaccount1")


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
