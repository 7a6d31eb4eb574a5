from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.data.datastores.base import KeyNotFound, UnsafeKey
from server.data.datastores.keys import accepted, check_key, compile_pattern, media_kind
from server.data.datastores.local import LocalDatastore
from tests.reliability import Measured


@pytest.mark.parametrize("key", ["../x.png", "/etc/passwd", "a/../../x.png", "%2e%2e/x.png",
                                 "a/%2E%2E/%2e%2e/x.png", "a\\b.png", "a//b.png", "./a.png",
                                 "nul\x00.png", ""])
def test_unsafe_keys(key: str) -> None:
    with pytest.raises(UnsafeKey):
        check_key(key)


def test_safe_keys_and_extensions() -> None:
    assert check_key("dir/sub/a b%20c.PNG") == "dir/sub/a b%20c.PNG"
    assert accepted("x.JfIf") and accepted("scan.DICOM") and not accepted("x.gif")
    assert not accepted("png") and media_kind("a/b.Dcm") == "dicom" and media_kind("a.tif") == "image"


@pytest.mark.parametrize("pattern,prefix,yes,no", [
    ("dir/**", "dir/", ["dir/a.png", "dir/x/y/z.jpg"], ["dira/b.png", "other/dir/a.png"]),
    ("**/*.*", "", ["a.png", "x/y/a.png"], ["noext"]),
    ("dir", "dir/", ["dir/a.png", "dir/x/a.png"], ["a.png"]),
    ("imgs/*.png", "imgs/", ["imgs/a.png"], ["imgs/x/a.png", "imgs/a.jpg"]),
    ("a/**/b/*.jpg", "a/", ["a/b/x.jpg", "a/q/r/b/x.jpg"], ["a/b/c/x.jpg"]),
])
def test_patterns(pattern: str, prefix: str, yes: list[str], no: list[str]) -> None:
    compiled = compile_pattern(pattern)
    assert compiled.list_prefix == prefix
    assert all(compiled.matches(k) for k in yes)
    assert not any(compiled.matches(k) for k in no)


async def test_local_store_stays_inside_its_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"1")
    (root / "a.png").write_bytes(b"22")
    (tmp_path / "secret.png").write_bytes(b"s")
    os.symlink(tmp_path / "secret.png", root / "out.png")
    store = LocalDatastore(root)
    assert [k async for k in store.list_keys()] == ["a.png", "a/x.png"]
    assert [k async for k in store.list_keys("a")] == ["a/x.png"]
    assert (await store.head("a.png")).size == 2
    assert await store.read("a/x.png", 10) == b"1"
    with pytest.raises(UnsafeKey):
        await store.read("out.png", 10)
    with pytest.raises(UnsafeKey):
        await store.read("../secret.png", 10)
    with pytest.raises(KeyNotFound):
        await store.head("nope.png")


@pytest.mark.reliability(
    area="Data sources",
    attack="Listed a folder store through symlinked folders leading out of its root, as the "
           "pattern's fixed prefix and deeper down",
    promise="Every folder walked is resolved and must lie inside the root: nothing is listed")
async def test_the_walk_resolves_every_folder(tmp_path: Path, measured: Measured) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(b"1")
    (tmp_path / "out" / "deep").mkdir(parents=True)
    (tmp_path / "out" / "deep" / "y.png").write_bytes(b"2")
    os.symlink(tmp_path / "out", root / "a" / "link")
    os.symlink(tmp_path / "out", root / "top")
    store = LocalDatastore(root)
    assert [k async for k in store.list_keys("")] == ["a/x.png"]
    assert [k async for k in store.list_keys("top")] == []
    assert [k async for k in store.list_keys("top/deep")] == []
    assert [k async for k in store.list_keys("a/link/deep")] == []
    measured("keys listed through a symlinked folder out of the root: 0")
