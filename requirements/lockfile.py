"""Compile and check the hashed lock files in requirements/.

    python requirements/lockfile.py compile   # `make lock`: resolve afresh with uv
    python requirements/lockfile.py compile --keep   # `make lock-keep`: keep the pins, add what is new
    python requirements/lockfile.py check     # fail if pyproject.toml and the locks disagree

Three locks, each a complete, hashed closure for Python 3.11 and 3.12 on every platform,
resolved together so that a package has the same version in all of them:

    base.txt  the server (what the wheel and the container image install)
    ml.txt    the server with ML assistance (the `ml` extra: torch, torchvision, Ray)
    dev.txt   the server with ML assistance and the test tools (`make run`, `make test`, CI)

Each lock starts with a digest of the inputs it was compiled from, so `check` notices an edit
to pyproject.toml's dependencies that was not followed by `make lock`, and then also checks
that every requirement is pinned at a version its specifier allows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
BUILD_IN = "requirements/build.in"
DIGEST_PREFIX = "# inputs-sha256: "
PYTHONS = ("3.11", "3.12")


@dataclass(frozen=True)
class Lock:
    name: str
    extras: tuple[str, ...]

    def path(self, root: Path) -> Path:
        return root / "requirements" / f"{self.name}.txt"


# dev first: the others are resolved under its pins so all three agree.
LOCKS = (Lock("dev", ("ml", "test")), Lock("base", ()), Lock("ml", ("ml",)))


def _project(root: Path) -> dict[str, Any]:
    with open(root / "pyproject.toml", "rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def _build_requirements(root: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in (root / BUILD_IN).read_text().splitlines())
    return [line for line in lines if line]


def inputs_digest(root: Path = ROOT) -> str:
    """A digest of everything the locks are resolved from."""
    project = _project(root)
    inputs = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "build": _build_requirements(root),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _requirements(root: Path, extras: tuple[str, ...]) -> list[Requirement]:
    project = _project(root)
    reqs = [Requirement(r) for r in project.get("dependencies", [])]
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        reqs += [Requirement(r) for r in optional[extra]]
    return reqs + [Requirement(r) for r in _build_requirements(root)]


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def read_pins(path: Path) -> dict[str, list[tuple[str, Marker | None]]]:
    """Package → [(version, marker)] as written in a lock (a package may be pinned per marker)."""
    pins: dict[str, list[tuple[str, Marker | None]]] = {}
    for line in path.read_text().splitlines():
        m = _PIN.match(line)
        if m:
            marker = Marker(m.group(3)) if m.group(3) else None
            pins.setdefault(canonicalize_name(m.group(1)), []).append((m.group(2), marker))
    return pins


def _environments() -> list[dict[str, str]]:
    """The environments the check evaluates markers in: each supported Python on Linux."""
    return [
        {"python_version": v, "python_full_version": f"{v}.0", "sys_platform": "linux",
         "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
         "implementation_name": "cpython", "platform_python_implementation": "CPython",
         "extra": ""}
        for v in PYTHONS
    ]


def _pinned_version(pins: dict[str, list[tuple[str, Marker | None]]], name: str,
                    env: dict[str, str]) -> str | None:
    for version, marker in pins.get(canonicalize_name(name), []):
        if marker is None or marker.evaluate(env):
            return version
    return None


def problems(root: Path = ROOT) -> list[str]:
    """Every way in which the locks disagree with pyproject.toml (empty when they agree)."""
    found: list[str] = []
    digest = inputs_digest(root)
    all_pins: dict[str, dict[str, list[tuple[str, Marker | None]]]] = {}
    for lock in LOCKS:
        path, name = lock.path(root), f"requirements/{lock.name}.txt"
        if not path.exists():
            found.append(f"{name} is missing")
            continue
        first = path.read_text().split("\n", 1)[0]
        if first != DIGEST_PREFIX + digest:
            found.append(f"{name} was compiled from other inputs "
                         "than pyproject.toml and requirements/build.in hold now")
        pins = all_pins[lock.name] = read_pins(path)
        for env in _environments():
            for req in _requirements(root, lock.extras):
                if req.marker is not None and not req.marker.evaluate(env):
                    continue
                version = _pinned_version(pins, req.name, env)
                where = f"{name} (Python {env['python_version']})"
                if version is None:
                    found.append(f"{where} does not pin {req.name}")
                elif not req.specifier.contains(version, prereleases=True):
                    found.append(f"{where} pins {req.name}=={version}, outside {req}")
    dev = all_pins.get("dev", {})
    for lock in LOCKS[1:]:
        for name, versions in all_pins.get(lock.name, {}).items():
            if dev and {v for v, _ in versions} - {v for v, _ in dev.get(name, [])}:
                found.append(f"requirements/{lock.name}.txt pins {name} at another version "
                             "than dev.txt")
    return sorted(set(found))


def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        sys.exit("uv is needed to compile the locks: it is part of the test extra (make install)")
    return uv


def compile_locks(keep: bool = False) -> None:
    """Resolve every lock afresh from PyPI (the only index the locks name); with `keep`, keep
    every pin the locks already hold that still satisfies pyproject.toml, so that adding a
    dependency adds it (and what it needs) without moving anything else."""
    uv, digest = _uv(), inputs_digest(ROOT)
    env = {**os.environ, "UV_INDEX_URL": "https://pypi.org/simple"}
    env.pop("UV_EXTRA_INDEX_URL", None)
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "dev-pins.txt"
        for lock in LOCKS:
            cmd = [uv, "pip", "compile", "--quiet", "--universal", "--python-version", PYTHONS[0],
                   "--generate-hashes", "--custom-compile-command", "make lock",
                   "--no-emit-index-url", "-o", str(lock.path(ROOT)), "pyproject.toml", BUILD_IN]
            cmd += [f"--extra={extra}" for extra in lock.extras]
            if lock.name != "dev":
                cmd += ["--constraints", str(constraints)]
            path = lock.path(ROOT)
            if not keep:
                path.unlink(missing_ok=True)  # resolve afresh rather than keep old pins
            subprocess.run(cmd, cwd=ROOT, env=env, check=True)
            # The dev pins are a temporary file; name the lock they come from instead, so that
            # recompiling changes only what was resolved differently.
            text = path.read_text().replace(str(constraints), "requirements/dev.txt")
            path.write_text(f"{DIGEST_PREFIX}{digest}\n{text}")
            if lock.name == "dev":
                constraints.write_text("".join(
                    f"{name}=={version}" + (f" ; {marker}" if marker else "") + "\n"
                    for name, pins in read_pins(path).items() for version, marker in pins))


def main(argv: list[str]) -> int:
    if argv[1:] in (["compile"], ["compile", "--keep"]):
        compile_locks(keep=argv[2:] == ["--keep"])
        return 0
    if argv[1:] == ["check"]:
        found = problems()
        for line in found:
            print(line, file=sys.stderr)
        if found:
            print("run `make lock` to compile the locks from pyproject.toml", file=sys.stderr)
        return 1 if found else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
