"""One settings object, read from COLABEL_* environment variables and passed to constructors."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from server.errors import ConfigError


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "colabel"


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be a boolean, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one Colabel process."""

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8000
    # Server processes on this machine, sharing the port (each one a node of a cluster: they
    # share Postgres and Redis). One process uses one core; on a machine with more, more
    # processes serve more labelers. The model service runs in one of them.
    workers: int = 1
    # None means "start the embedded engine under data_dir".
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "colabel:"
    # Signs session cookies; every replica behind one proxy must share it.
    secret_key: str = ""
    # Public origin (scheme://host[:port]) browsers use; the CSRF check compares Origin
    # against it. Empty means "same host as the request".
    public_url: str = ""
    session_ttl_s: int = 14 * 24 * 3600
    login_max_failures_account: int = 10
    login_max_failures_address: int = 50
    login_window_s: int = 900
    # Folders a `local` datastore may point into (os.pathsep-separated in the env var).
    local_roots: tuple[Path, ...] = ()
    max_items_per_project: int = 500_000
    # Storage endpoints must be public addresses. These let an instance admin allow loopback,
    # http:// included (the Azurite emulator in tests), and private networks (a storage
    # private endpoint).
    azure_allow_emulator: bool = False
    azure_allow_private: bool = False
    azure_read_timeout_s: float = 20.0
    db_pool_min: int = 2
    db_pool_max: int = 20
    # Redis connections of this process. More requests than this at once wait for a free one
    # (up to db_timeout_s) rather than fail: a workforce's bursts queue, they are not refused.
    redis_pool_max: int = 128
    # The longest anything waits on Postgres: a statement (Postgres cancels it, and the
    # client gives up half a second later if Postgres does not answer at all), a free
    # pooled connection, a new connection. Past it a request answers 503 with Retry-After.
    db_timeout_s: float = 5.0
    # The statement deadline of bulk work, which legitimately runs long statements:
    # ingest and refresh, imports, exports, work-queue rebuilds, ML clustering.
    db_bulk_timeout_s: float = 600.0
    upload_max_file_bytes: int = 512 * 1024 * 1024
    upload_max_request_bytes: int = 4 * 1024 * 1024 * 1024
    import_max_bytes: int = 1024 * 1024 * 1024
    # Media: files larger than this are not read; images over this many pixels are refused.
    media_max_bytes: int = 1024 * 1024 * 1024
    media_max_pixels: int = 100_000_000
    # Background jobs: how often each server process looks for due work.
    refresh_poll_s: float = 30.0
    probe_poll_s: float = 2.0
    export_poll_s: float = 1.0
    job_poll_s: float = 2.0
    # Run the background work (jobs, exports, probing, refreshes, ML) in this process:
    # true for `colabel worker`, false for serving processes that have job workers.
    background_jobs: bool = True
    # Job worker processes `colabel serve` starts beside its server processes (exports,
    # imports, ingest, probing and training run there, off the processes that serve
    # labelers). 0 starts none: `colabel worker` processes are run separately (compose).
    job_workers: int = 1
    # ML assistance: off turns the model service off for this process (no Ray at all).
    ml_enabled: bool = True
    ml_poll_s: float = 5.0
    ml_input_size: int = 224
    ml_epochs: int = 12
    # The built browser app; None = client/dist next to the server package (a checkout).
    client_dir: Path | None = None
    # Collaboration WebSockets: largest frame (close 1009 beyond), per-connection rate.
    collab_max_message_bytes: int = 4 * 1024 * 1024
    collab_messages_per_s: float = 200.0
    collab_burst: float = 1000.0
    # A client's unsent backlog past this many bytes means it stopped reading: it is closed
    # (1013, it reconnects and resyncs) and the backlog freed.
    collab_queue_bytes: int = 16 * 1024 * 1024
    # Work leases: how long a labeler holds an item without activity.
    lease_ttl_s: int = 600
    # Open sockets are re-checked this often in case an access change was not announced.
    access_check_s: float = 1.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Read the COLABEL_* variables; keyword overrides (e.g. from CLI flags) win."""
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("COLABEL_DATA_DIR") or default_data_dir())
        roots_raw = env.get("COLABEL_LOCAL_ROOTS", "")
        settings = cls(
            data_dir=data_dir,
            host=env.get("COLABEL_HOST", "127.0.0.1"),
            port=_int(env, "COLABEL_PORT", 8000),
            workers=_int(env, "COLABEL_WORKERS", 1),
            database_url=env.get("COLABEL_DATABASE_URL") or None,
            redis_url=env.get("COLABEL_REDIS_URL") or None,
            redis_prefix=env.get("COLABEL_REDIS_PREFIX", "colabel:"),
            secret_key=env.get("COLABEL_SECRET_KEY", ""),
            public_url=env.get("COLABEL_PUBLIC_URL", "").rstrip("/"),
            session_ttl_s=_int(env, "COLABEL_SESSION_TTL_S", 14 * 24 * 3600),
            login_max_failures_account=_int(env, "COLABEL_LOGIN_MAX_FAILURES_ACCOUNT", 10),
            login_max_failures_address=_int(env, "COLABEL_LOGIN_MAX_FAILURES_ADDRESS", 50),
            login_window_s=_int(env, "COLABEL_LOGIN_WINDOW_S", 900),
            local_roots=tuple(Path(p) for p in roots_raw.split(os.pathsep) if p),
            max_items_per_project=_int(env, "COLABEL_MAX_ITEMS_PER_PROJECT", 500_000),
            azure_allow_emulator=_bool(env, "COLABEL_AZURE_ALLOW_EMULATOR", False),
            azure_allow_private=_bool(env, "COLABEL_AZURE_ALLOW_PRIVATE", False),
            azure_read_timeout_s=float(_int(env, "COLABEL_AZURE_READ_TIMEOUT_S", 20)),
            db_pool_min=_int(env, "COLABEL_DB_POOL_MIN", 2),
            db_pool_max=_int(env, "COLABEL_DB_POOL_MAX", 20),
            redis_pool_max=_int(env, "COLABEL_REDIS_POOL_MAX", 128),
            db_timeout_s=_float(env, "COLABEL_DB_TIMEOUT_S", 5.0),
            db_bulk_timeout_s=_float(env, "COLABEL_DB_BULK_TIMEOUT_S", 600.0),
            upload_max_file_bytes=_int(env, "COLABEL_UPLOAD_MAX_FILE_BYTES", 512 * 1024 * 1024),
            upload_max_request_bytes=_int(
                env, "COLABEL_UPLOAD_MAX_REQUEST_BYTES", 4 * 1024 * 1024 * 1024
            ),
            import_max_bytes=_int(env, "COLABEL_IMPORT_MAX_BYTES", 1024 * 1024 * 1024),
            media_max_bytes=_int(env, "COLABEL_MEDIA_MAX_BYTES", 1024 * 1024 * 1024),
            media_max_pixels=_int(env, "COLABEL_MEDIA_MAX_PIXELS", 100_000_000),
            refresh_poll_s=float(_int(env, "COLABEL_REFRESH_POLL_S", 30)),
            probe_poll_s=float(_int(env, "COLABEL_PROBE_POLL_S", 2)),
            export_poll_s=float(_int(env, "COLABEL_EXPORT_POLL_S", 1)),
            job_poll_s=_float(env, "COLABEL_JOB_POLL_S", 2.0),
            job_workers=_int(env, "COLABEL_JOB_WORKERS", 1),
            background_jobs=_bool(env, "COLABEL_BACKGROUND_JOBS", True),
            client_dir=Path(env["COLABEL_CLIENT_DIR"]) if env.get("COLABEL_CLIENT_DIR") else None,
            ml_enabled=_bool(env, "COLABEL_ML_ENABLED", True),
            ml_poll_s=float(_int(env, "COLABEL_ML_POLL_S", 5)),
            ml_input_size=_int(env, "COLABEL_ML_INPUT_SIZE", 224),
            ml_epochs=_int(env, "COLABEL_ML_EPOCHS", 12),
            collab_max_message_bytes=_int(env, "COLABEL_COLLAB_MAX_MESSAGE_BYTES", 4 * 1024 * 1024),
            collab_messages_per_s=float(_int(env, "COLABEL_COLLAB_MESSAGES_PER_S", 200)),
            collab_burst=float(_int(env, "COLABEL_COLLAB_BURST", 1000)),
            collab_queue_bytes=_int(env, "COLABEL_COLLAB_QUEUE_BYTES", 16 * 1024 * 1024),
            lease_ttl_s=_int(env, "COLABEL_LEASE_TTL_S", 600),
            access_check_s=float(_int(env, "COLABEL_ACCESS_CHECK_S", 1)),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "data_dir" in clean:
            clean["data_dir"] = Path(str(clean["data_dir"]))
        settings = replace(settings, **clean)  # type: ignore[arg-type]
        if settings.workers < 1:
            raise ConfigError(f"COLABEL_WORKERS (--workers) must be at least 1, got {settings.workers}")
        if settings.job_workers < 0:
            raise ConfigError("COLABEL_JOB_WORKERS (--job-workers) must be 0 or more, "
                              f"got {settings.job_workers}")
        return settings

    def environment(self) -> dict[str, str]:
        """The COLABEL_* variables that give another process these resolved settings (the
        engines' URLs, the secret key, where the data lives): what a worker process of
        `colabel serve --workers N` starts from."""
        out = {"COLABEL_DATA_DIR": str(self.data_dir), "COLABEL_HOST": self.host,
               "COLABEL_PORT": str(self.port), "COLABEL_SECRET_KEY": self.secret_key,
               "COLABEL_WORKERS": str(self.workers),
               "COLABEL_JOB_WORKERS": str(self.job_workers)}
        if self.database_url:
            out["COLABEL_DATABASE_URL"] = self.database_url
        if self.redis_url:
            out["COLABEL_REDIS_URL"] = self.redis_url
        return out

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def effective_local_roots(self) -> tuple[Path, ...]:
        """Configured roots, or the data directory's `datasets/` folder by default."""
        return self.local_roots or (self.data_dir / "datasets",)

    def with_secret(self) -> Settings:
        """Fill in the secret key from the data directory when none is configured.

        The key is generated once and kept in `data_dir/secret_key` so sessions survive a
        restart of a single-node install.
        """
        if self.secret_key:
            return self
        path = self.data_dir / "secret_key"
        if path.exists():
            key = path.read_text().strip()
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            key = secrets.token_hex(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(key)
        return replace(self, secret_key=key)
