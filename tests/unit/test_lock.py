"""The hashed locks in requirements/ agree with pyproject.toml, and a disagreement is caught."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.infra import ROOT


def _lockfile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lockfile", ROOT / "requirements" / "lockfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


lockfile = _lockfile()


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """pyproject.toml and requirements/ as they are in the checkout, to edit."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_locks_agree_with_pyproject() -> None:
    assert lockfile.problems() == []


def test_every_lock_is_hashed_and_pins_exact_versions() -> None:
    for name in ("base", "ml", "dev"):
        text = (ROOT / "requirements" / f"{name}.txt").read_text()
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 3)[3])
        assert len(entries) > 40
        for entry in entries:
            assert "==" in entry.split(" ", 1)[0], entry[:80]
            assert "--hash=sha256:" in entry, entry[:80]


def test_the_plain_install_leaves_out_ml_and_test_tools() -> None:
    base = lockfile.read_pins(ROOT / "requirements" / "base.txt")
    ml = lockfile.read_pins(ROOT / "requirements" / "ml.txt")
    dev = lockfile.read_pins(ROOT / "requirements" / "dev.txt")
    assert {"torch", "torchvision", "ray", "pytest", "mypy"}.isdisjoint(base)
    assert {"torch", "torchvision", "ray"} <= set(ml) and "pytest" not in ml
    assert {"torch", "ray", "pytest", "mypy", "playwright", "uv"} <= set(dev)
    # One version of a package everywhere.
    for pins in (base, ml):
        for name, versions in pins.items():
            assert versions == dev[name], name


def test_a_dependency_added_without_relocking_is_caught(copy: Path) -> None:
    _edit(copy / "pyproject.toml", '    "orjson>=3.10",\n', '    "orjson>=3.10",\n    "humanize>=4",\n')
    found = lockfile.problems(copy)
    assert any("compiled from other inputs" in p for p in found)
    assert "requirements/base.txt (Python 3.11) does not pin humanize" in found
    assert "requirements/dev.txt (Python 3.12) does not pin humanize" in found


def test_a_specifier_the_pin_falls_outside_is_caught(copy: Path) -> None:
    _edit(copy / "pyproject.toml", '"redis>=5.0"', '"redis>=5.0,<8"')
    found = lockfile.problems(copy)
    outside = r"requirements/ml\.txt \(Python 3\.11\) pins redis==[\d.]+, outside redis<8,>=5\.0"
    assert any(re.fullmatch(outside, p) for p in found), found


def test_a_hand_edited_lock_is_caught(copy: Path) -> None:
    base = copy / "requirements" / "base.txt"
    pinned = lockfile.read_pins(base)["orjson"][0][0]
    _edit(base, f"orjson=={pinned}", "orjson==3.10.0")
    assert "requirements/base.txt pins orjson at another version than dev.txt" in lockfile.problems(copy)
    (copy / "requirements" / "ml.txt").unlink()
    assert "requirements/ml.txt is missing" in lockfile.problems(copy)
