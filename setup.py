"""Ships the built browser app inside the wheel, as `server/webapp`.

Everything else about the package is in pyproject.toml. A wheel built from a checkout
whose client is not built (`make client`) is refused rather than shipped without its app;
editable installs serve `client/dist` from the checkout and copy nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CLIENT_DIST = Path(__file__).resolve().parent / "client" / "dist"


class BuildWithWebapp(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not (CLIENT_DIST / "index.html").is_file():
            raise SystemExit("client/dist is not built: run `make client` (or `make wheel`) first")
        target = Path(self.build_lib) / "server" / "webapp"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(CLIENT_DIST, target)


setup(cmdclass={"build_py": BuildWithWebapp})
