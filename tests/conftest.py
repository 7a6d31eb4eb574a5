"""Session fixtures: one database, one Redis prefix and one server process per run."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from server.embedded import EmbeddedPostgres, EmbeddedRedis
from server.services import Services
from server.settings import Settings
from tests.azurite import AzuriteInfo, run_azurite
from tests.infra import ROOT, Api, Bound, bound, delete_keys, run_server, server_env, tcp_open, unique

pytest_plugins = ["tests.reliability"]

ADMIN_EMAIL = "admin@colabel.test"
PASSWORD = "correct horse battery"
UPLOAD_MAX_FILE = 2 * 1024 * 1024
UPLOAD_MAX_REQUEST = 6 * 1024 * 1024


def run_sync(make_coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine to completion from sync or async test code (its own thread)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(make_coro())).result()


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


def _engine(env_var: str, port: int, local_url: str,
            embedded: EmbeddedPostgres | EmbeddedRedis) -> Iterator[str]:
    """The configured server, else the local one on `port`, else an embedded engine.
    COLABEL_TEST_ENGINES=embedded runs on the embedded engines whatever else is there:
    they are what most people run (`make test` does one pass of the Redis- and
    Postgres-heavy tests on them)."""
    url = os.environ.get(env_var)
    forced = os.environ.get("COLABEL_TEST_ENGINES") == "embedded"
    if url and not forced:
        yield url
    elif tcp_open("127.0.0.1", port) and not forced:
        yield local_url
    else:
        yield embedded.start()
        embedded.stop()


@pytest.fixture(scope="session")
def pg_admin_url(engine_dir: Path) -> Iterator[str]:
    """A URL with the right to create databases."""
    yield from _engine("COLABEL_TEST_DATABASE_URL", 5432,
                       "postgresql://postgres@127.0.0.1:5432/postgres",
                       EmbeddedPostgres(engine_dir / "pg"))


@pytest.fixture(scope="session")
def redis_url(engine_dir: Path) -> Iterator[str]:
    yield from _engine("COLABEL_TEST_REDIS_URL", 6379, "redis://127.0.0.1:6379/0",
                       EmbeddedRedis(engine_dir / "redis"))


def _with_database(admin_url: str, name: str) -> str:
    """The admin URL pointed at database `name` (works for TCP and socket URLs)."""
    head, _, query = admin_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def fresh_database(pg_admin_url: str, engine_dir: Path) -> Iterator[Callable[[], str]]:
    """A factory of brand-new, empty databases, all dropped at the end of the run (an
    embedded cluster of the run's own is thrown away whole instead)."""
    created: list[str] = []

    def make() -> str:
        name = f"colabel_test_{uuid.uuid4().hex[:12]}"

        async def create() -> None:
            conn = await asyncpg.connect(pg_admin_url)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        run_sync(create)
        created.append(name)
        return _with_database(pg_admin_url, name)

    yield make
    if str(engine_dir) in pg_admin_url:
        return

    async def drop() -> None:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            for name in created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    run_sync(drop)


@pytest.fixture(scope="session")
def database_url(fresh_database: Callable[[], str]) -> str:
    return fresh_database()


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"colabel-test-{uuid.uuid4().hex[:10]}:"
    yield prefix
    delete_keys(redis_url, prefix)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteInfo]:
    """An Azurite blob emulator for the run (npm package, started by the tests)."""
    with run_azurite(tmp_path_factory.mktemp("azurite")) as info:
        yield info


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def env(database_url: str, redis_url: str, redis_prefix: str, data_dir: Path) -> dict[str, str]:
    return server_env(database_url, redis_url, redis_prefix, data_dir,
                      COLABEL_LOGIN_MAX_FAILURES_ACCOUNT="5",
                      COLABEL_LOGIN_MAX_FAILURES_ADDRESS="1000",
                      COLABEL_UPLOAD_MAX_FILE_BYTES=str(UPLOAD_MAX_FILE),
                      COLABEL_UPLOAD_MAX_REQUEST_BYTES=str(UPLOAD_MAX_REQUEST),
                      COLABEL_PROBE_POLL_S="1",
                      COLABEL_ML_POLL_S="1", COLABEL_ML_INPUT_SIZE="64", COLABEL_ML_EPOCHS="8",
                      COLABEL_AZURE_ALLOW_EMULATOR="true",
                      # The suite can also run against `colabel serve --workers N`.
                      COLABEL_WORKERS=os.environ.get("COLABEL_TEST_SERVER_WORKERS", "1"))


@pytest.fixture
async def services(database_url: str, redis_url: str, redis_prefix: str,
                   data_dir: Path) -> AsyncIterator[Services]:
    """The server's own services object on this run's database, for direct calls."""
    settings = Settings(data_dir=data_dir, database_url=database_url, redis_url=redis_url,
                        redis_prefix=redis_prefix, secret_key="x", background_jobs=False)
    svc = await Services.open(settings)
    yield svc
    await svc.close()


@pytest.fixture(scope="session")
def server(env: dict[str, str], data_dir: Path) -> Iterator[str]:
    """Base URL of a real uvicorn running the app on this run's database and Redis."""
    # createuser before the first serve must just work (and migrates on its own).
    subprocess.run(
        [sys.executable, "-m", "server", "createuser", "--email", ADMIN_EMAIL,
         "--password", PASSWORD, "--name", "Admin", "--admin"],
        env=env, cwd=ROOT, check=True, capture_output=True,
    )
    with run_server(env, [], data_dir / "server.log") as (base, _proc, _took):
        yield base


@pytest.fixture(scope="session")
def admin(server: str) -> Api:
    return Api(server).login(ADMIN_EMAIL, PASSWORD)


@pytest.fixture
def anon(server: str) -> Api:
    return Api(server)


@pytest.fixture(scope="session")
def make_user(server: str, admin: Api) -> Callable[..., Api]:
    """Create a user through the admin API and return a signed-in client for them."""

    def make(name: str = "user", is_admin: bool = False) -> Api:
        email = f"{unique(name)}@colabel.test"
        r = admin.post("/api/v1/users", {"email": email, "password": PASSWORD,
                                         "name": name, "is_admin": is_admin})
        assert r.status_code == 201, r.text
        return Api(server).login(email, PASSWORD)

    return make


OWN_ADMIN = "own-admin@colabel.test"


@pytest.fixture
def own_engines(fresh_database: Callable[[], str], redis_url: str,
                tmp_path: Path) -> Iterator[Callable[..., dict[str, str]]]:
    """Settings for servers on a database and Redis prefix of their own, with an instance
    admin (OWN_ADMIN): no other server's worker can take their jobs. Folders under
    `tmp_path` may be bound."""
    prefixes: list[str] = []

    def make(**extra: str) -> dict[str, str]:
        prefixes.append(f"colabel-test-{unique('own')}:")
        env = server_env(fresh_database(), redis_url, prefixes[-1], tmp_path / "data",
                         COLABEL_LOCAL_ROOTS=str(tmp_path), COLABEL_ML_ENABLED="false", **extra)
        subprocess.run([sys.executable, "-m", "server", "createuser", "--email", OWN_ADMIN,
                        "--password", PASSWORD, "--admin"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        return env

    yield make
    for prefix in prefixes:
        delete_keys(redis_url, prefix)


@functools.cache
def admin_at(base_url: str) -> Api:
    """The run's instance admin, signed in to the server at `base_url`."""
    return Api(base_url).login(ADMIN_EMAIL, PASSWORD)


def bind_folder(owner: Api, pid: int, folder: Path | str, pattern: str = "**/*.*",
                **extra: Any) -> Bound:
    """Bind a folder on the server to `owner`'s project and wait for its files to be
    registered. The instance admin sends it: only admins may bind a folder on the server."""
    body = {"datastore": {"kind": "local", "path": str(folder)}, "pattern": pattern, **extra}
    admin = admin_at(owner.base_url)
    return bound(admin, admin.put(f"/api/v1/projects/{pid}/dataset", body))


def project_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": unique("project"),
        "task_type": "multiclass",
        "labels": [{"name": "Animal", "children": [{"name": "Cat"}, {"name": "Dog"}]},
                   {"name": "Color", "children": [{"name": "Black"}, {"name": "White"}]}],
        "instructions": {"text": "Label the **animal**.", "url": "https://example.org/guide"},
    }
    body.update(overrides)
    return body


@pytest.fixture
def make_project(make_user: Callable[..., Api]) -> Callable[..., tuple[Api, dict[str, Any]]]:
    """A fresh owner and a project they created; returns (owner client, project json)."""

    def make(**overrides: Any) -> tuple[Api, dict[str, Any]]:
        owner = make_user("owner")
        r = owner.post("/api/v1/projects", project_body(**overrides))
        assert r.status_code == 201, r.text
        return owner, r.json()["project"]

    return make
