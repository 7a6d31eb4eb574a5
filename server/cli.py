"""The `colabel` command: serve, worker, migrate, createuser."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from migrations.runner import MigrationError, migrate
from server.errors import ApiError, ConfigError
from server.settings import Settings

log = logging.getLogger("colabel")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colabel", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="where embedded engines and files live "
                        "(default: $COLABEL_DATA_DIR or ~/.local/share/colabel)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="run the server")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8000)")
    serve.add_argument("--workers", type=int, help="server processes sharing the port, one per "
                       "core to give them (default 1, or $COLABEL_WORKERS)")
    serve.add_argument("--job-workers", type=int,
                       help="worker processes to start for background work: jobs, exports, "
                       "probing, training (default 1, or $COLABEL_JOB_WORKERS; 0 when "
                       "`colabel worker` runs separately)")
    serve.add_argument("--demo", action="store_true",
                       help="create a demo admin and a demo project with generated images")
    serve.add_argument("--log-level", default="info")
    sub.add_parser("worker", parents=[common],
                   help="run background work (jobs, exports, probing, training) against "
                   "$COLABEL_DATABASE_URL and $COLABEL_REDIS_URL")
    sub.add_parser("migrate", parents=[common], help="apply database migrations")
    cu = sub.add_parser("createuser", parents=[common], help="create a user")
    cu.add_argument("--email", required=True)
    cu.add_argument("--password", required=True)
    cu.add_argument("--name", default="")
    cu.add_argument("--admin", action="store_true", help="make the user an instance admin")
    return parser


def _serve(settings: Settings, demo: bool, log_level: str) -> None:
    import uvicorn

    from server.app import create_app
    from server.demo import ensure_demo
    from server.engines import engines
    from server.live.channel import PROTOCOL
    from server.worker_processes import WorkerProcesses

    with engines(settings) as s:
        assert s.database_url
        asyncio.run(migrate(s.database_url))
        info = asyncio.run(ensure_demo(s)) if demo else None
        url = f"http://{s.host}:{s.port}"
        print(f"Colabel listening on {url}  (data: {s.data_dir})", flush=True)
        if info:
            print(f"Sign in as {info.email} / {info.password}  "
                  f"(demo project {info.project_id})", flush=True)
        else:
            print("Create an admin with: colabel createuser --email E --password P --admin",
                  flush=True)
        # uvicorn re-raises SIGTERM after a graceful shutdown; turning it into SystemExit
        # lets the embedded engines stop cleanly instead of dying with the process.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        options: dict[str, Any] = {
            "host": s.host, "port": s.port, "log_level": log_level, "proxy_headers": True,
            # uvicorn's WebSocket protocol with the direct channel live documents use.
            "ws": PROTOCOL, "ws_max_size": s.collab_max_message_bytes,
            # Yjs updates are small and already compact; deflate cost more CPU than it
            # saved bandwidth (the reference y-websocket server does not use it).
            "ws_per_message_deflate": False}
        # COLABEL_BACKGROUND_JOBS=false: a server that runs no background work at all.
        workers = WorkerProcesses(s, s.job_workers if s.background_jobs else 0)
        workers.start()
        try:
            if s.workers == 1:
                uvicorn.run(create_app(replace(s, background_jobs=False)), **options)
                return
            # Each server process is a fresh one (spawned): it builds the app from the
            # environment, where the engines this process started and the secret key are.
            os.environ.update(s.environment())
            uvicorn.run("server.app:app_from_environment", factory=True, workers=s.workers,
                        **options)
        finally:
            workers.stop()  # before the engines they use stop


def _worker(settings: Settings) -> None:
    from server.worker import run

    if settings.database_url is None or settings.redis_url is None:
        raise ConfigError("colabel worker needs COLABEL_DATABASE_URL and COLABEL_REDIS_URL (the "
                          "engines of the servers it works for); `colabel serve` starts its "
                          "own workers on the embedded ones")
    asyncio.run(run(settings))


def configure_logging() -> None:
    """Colabel's own log lines at INFO, and no API token in any request line."""
    from server import logredact

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # pgserver narrates every pg_ctl call at INFO; only its problems are worth showing.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    logredact.install()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _migrate(settings: Settings) -> None:
    from server.engines import engines

    with engines(settings, need_redis=False) as s:
        assert s.database_url
        applied = asyncio.run(migrate(s.database_url))
        print("applied: " + ", ".join(applied) if applied else "nothing to apply")


def _createuser(settings: Settings, email: str, password: str, name: str, admin: bool) -> None:
    import asyncpg
    from pydantic import ValidationError

    from server.accounts.users import UserCreate, create_user
    from server.engines import engines
    from server.validation import unprocessable_from

    try:
        body = UserCreate(email=email, password=password, name=name, is_admin=admin)
    except ValidationError as exc:
        raise unprocessable_from(exc) from None

    async def run(dsn: str) -> int:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            user = await create_user(conn, email=body.email, password=body.password,
                                     name=body.name, is_admin=body.is_admin)
            return user.id
        finally:
            await conn.close()

    with engines(settings, need_redis=False) as s:
        assert s.database_url
        uid = asyncio.run(run(s.database_url))
        print(f"created user {uid} <{email}>{' (admin)' if admin else ''}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    try:
        settings = Settings.from_env(
            data_dir=args.data_dir,
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            workers=getattr(args, "workers", None),
            job_workers=getattr(args, "job_workers", None),
        ).with_secret()
        if args.command == "serve":
            _serve(settings, args.demo, args.log_level)
        elif args.command == "worker":
            _worker(settings)
        elif args.command == "migrate":
            _migrate(settings)
        else:
            _createuser(settings, args.email, args.password, args.name, args.admin)
    except (ConfigError, MigrationError) as exc:
        print(f"colabel: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"colabel: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
