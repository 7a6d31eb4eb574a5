"""The layers and packages keep their promises (docs/ARCHITECTURE.md): nothing imports the
server; the live-document core imports no web framework; no module reaches into an HTTP
module but the list that gathers them; every Redis key is built in a package's keys module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("server", "collab", "inference", "migrations")


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, relative imports resolved."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


ALL = {name: path for package in PACKAGES for name, path in _modules(package).items()}


def test_nothing_imports_the_server() -> None:
    offenders = {name: sorted(i for i in _imports(name, path) if i == "server" or i.startswith("server."))
                 for name, path in ALL.items() if not name.startswith("server")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_live_document_core_imports_no_web_framework() -> None:
    offenders = {name: sorted(i for i in _imports(name, path) if i.split(".")[0] in ("starlette", "uvicorn"))
                 for name, path in ALL.items() if name.startswith("collab")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_endpoint_list_imports_http_modules() -> None:
    """HTTP modules (`*_api`) hold handlers; what others need lives in domain modules.
    An HTTP module may share a request model with another of its own package."""
    api = {name for name in ALL if name.endswith("_api")}
    offenders = {}
    for name, path in ALL.items():
        if name == "server.endpoints":
            continue
        used = {i for i in _imports(name, path) if i in api}
        if name in api:
            used = {i for i in used if i.rpartition(".")[0] != name.rpartition(".")[0]}
        if used:
            offenders[name] = sorted(used)
    assert offenders == {}


# A key under the Redis prefix: `{prefix}name:` (a blob path under a folder prefix is `{prefix}/`).
_KEY = re.compile(r"""f["'][^"']*\{(self\.)?(redis_)?prefix\}[a-z_]+:""")


def test_redis_keys_are_built_in_keys_modules() -> None:
    """A key or channel under the instance prefix is spelled out in one place per package."""
    offenders = [f"{name}:{n}" for name, path in ALL.items() if not name.endswith(".keys")
                 for n, line in enumerate(path.read_text().splitlines(), 1) if _KEY.search(line)]
    assert offenders == []


def test_inference_knows_nothing_of_documents() -> None:
    """The server writes model output into documents; the models never see them."""
    offenders = {name: sorted(i for i in _imports(name, path) if i.split(".")[0] == "collab")
                 for name, path in ALL.items() if name.startswith("inference")}
    assert {k: v for k, v in offenders.items() if v} == {}
