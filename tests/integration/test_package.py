"""The wheel runs from anywhere: built with the browser app inside, installed with the plain
lock (no ML extra) into a fresh virtual environment outside the checkout, on every supported
Python, and served from an empty directory on the embedded engines."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.demo import DEMO_EMAIL, DEMO_PASSWORD, DEMO_PROJECT
from tests.infra import ROOT, Api, run_server

SUPPORTED = ("3.11", "3.12")


def find_python(version: str) -> str | None:
    """An interpreter of `version`: on PATH, or one pyenv installed."""
    home = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{version}"),
                  *sorted(glob.glob(str(home / "versions" / f"{version}.*" / "bin" / f"python{version}")))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make wheel`'s build, into a folder of this test's."""
    out = tmp_path_factory.mktemp("dist")
    shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools would reuse stale files
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("colabel-*.whl")
    return built


def test_the_wheel_carries_the_browser_app_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "server/webapp/index.html" in names
    assets = {n for n in names if n.startswith("server/webapp/assets/") and n.endswith(".js")}
    assert assets == {f"server/webapp/{p.relative_to(ROOT / 'client' / 'dist')}"
                      for p in (ROOT / "client" / "dist" / "assets").glob("*.js")}
    migrations = {n for n in names if re.fullmatch(r"migrations/\d+_.*\.sql", n)}
    assert migrations == {f"migrations/{p.name}" for p in (ROOT / "migrations").glob("*.sql")}
    assert not any(n.startswith(("tests/", "bench/", "client/")) for n in names)


@pytest.fixture(params=SUPPORTED, ids=[f"python{v}" for v in SUPPORTED])
def installed(request: pytest.FixtureRequest, wheel: Path,
              tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A fresh venv outside the checkout with the plain lock and the wheel; (bin dir, version)."""
    version: str = request.param
    python = find_python(version)
    if python is None:
        message = f"Python {version} is not installed here (pyenv install {version})"
        if os.environ.get("COLABEL_PYTHONS_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--require-hashes", "-r", str(ROOT / "requirements" / "base.txt")],
                   check=True, timeout=900)
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, timeout=300)
    yield venv / "bin", version


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_installed_wheel_serves_from_any_directory(installed: tuple[Path, str], tmp_path: Path) -> None:
    bin_dir, version = installed
    check = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import sys, server, importlib.util as u; print('%d.%d' % sys.version_info[:2]); "
         "print(server.__file__); print([m for m in ('torch', 'ray') if u.find_spec(m)])"],
        capture_output=True, text=True, check=True, cwd=tmp_path)
    found_version, location, ml = check.stdout.split("\n")[:3]
    assert found_version == version
    assert "site-packages" in location and not location.startswith(str(ROOT))
    assert ml == "[]"  # the plain install has no ML extra

    workdir = tmp_path / "somewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COLABEL_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    with run_server(env, ["--demo", "--data-dir", str(tmp_path / "data")], tmp_path / "serve.log",
                    timeout_s=120, command=[str(bin_dir / "colabel")], cwd=workdir) as (base, _proc, _took):
        page = httpx.get(base + "/")
        assert page.status_code == 200
        assert page.text == (ROOT / "client" / "dist" / "index.html").read_text()
        script = re.search(r'src="(/assets/[^"]+\.js)"', page.text)
        assert script is not None and httpx.get(base + script.group(1)).status_code == 200
        assert httpx.get(base + "/readyz").json()["status"] == "ready"

        demo = Api(base).login(DEMO_EMAIL, DEMO_PASSWORD)
        assert demo.get("/api/v1/me").json()["user"]["email"] == DEMO_EMAIL
        [project] = [p for p in demo.get("/api/v1/projects").json()["projects"] if p["name"] == DEMO_PROJECT]
        media = demo.get(f"/api/v1/projects/{project['id']}/items?limit=1").json()["items"][0]
        assert demo.get(f"/api/v1/projects/{project['id']}/items/{media['id']}/media").status_code == 200

        # ML assistance is not installed: the project says so and how to enable it.
        r = demo.patch(f"/api/v1/projects/{project['id']}", {"ml_assist": {"enabled": True}})
        assert r.status_code == 200, r.text
        ml = demo.get(f"/api/v1/projects/{project['id']}/ml").json()["ml"]
        assert ml["phase"] == "unavailable"
        assert "pip install 'colabel[ml]'" in ml["reason"]
        assert "colabel[ml]" in ml["service"]["reason"]
        train = demo.post(f"/api/v1/projects/{project['id']}/ml", {"action": "train"})
        assert train.status_code == 409 and train.json()["error"]["code"] == "ml_unavailable"
    assert not (workdir / ".colabel").exists() and list(workdir.iterdir()) == []
