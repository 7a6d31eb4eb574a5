from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from server.errors import ConfigError
from server.settings import Settings


def test_env_is_read_and_overrides_win(tmp_path: Path) -> None:
    env = {
        "COLABEL_DATA_DIR": str(tmp_path),
        "COLABEL_PORT": "9001",
        "COLABEL_DATABASE_URL": "postgresql://db/x",
        "COLABEL_LOCAL_ROOTS": os.pathsep.join(["/a", "/b"]),
        "COLABEL_AZURE_ALLOW_EMULATOR": "yes",
        "COLABEL_AZURE_ALLOW_PRIVATE": "on",
        "COLABEL_PUBLIC_URL": "https://label.example.org/",
    }
    s = Settings.from_env(env, port=9002)
    assert s.port == 9002 and s.data_dir == tmp_path
    assert s.database_url == "postgresql://db/x" and s.redis_url is None
    assert s.local_roots == (Path("/a"), Path("/b"))
    assert s.azure_allow_emulator is True and s.azure_allow_private is True
    assert Settings.from_env({}).azure_allow_private is False
    assert s.public_url == "https://label.example.org"


def test_default_local_root_is_inside_the_data_dir(tmp_path: Path) -> None:
    s = Settings.from_env({"COLABEL_DATA_DIR": str(tmp_path)})
    assert s.effective_local_roots == (tmp_path / "datasets",)


def test_database_deadlines_default_and_read() -> None:
    s = Settings.from_env({})
    assert (s.db_timeout_s, s.db_bulk_timeout_s) == (5.0, 600.0)
    s = Settings.from_env({"COLABEL_DB_TIMEOUT_S": "2.5", "COLABEL_DB_BULK_TIMEOUT_S": "60"})
    assert (s.db_timeout_s, s.db_bulk_timeout_s) == (2.5, 60.0)


@pytest.mark.parametrize("env", [{"COLABEL_PORT": "eighty"},
                                 {"COLABEL_AZURE_ALLOW_EMULATOR": "maybe"},
                                 {"COLABEL_DB_TIMEOUT_S": "soon"},
                                 {"COLABEL_DB_TIMEOUT_S": "0"},
                                 {"COLABEL_DB_BULK_TIMEOUT_S": "-1"},
                                 {"COLABEL_WORKERS": "0"}, {"COLABEL_WORKERS": "two"}])
def test_bad_values_are_config_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    s = Settings.from_env({"COLABEL_DATA_DIR": str(tmp_path)})
    first = s.with_secret().secret_key
    assert len(first) == 64
    assert s.with_secret().secret_key == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert Settings.from_env({"COLABEL_SECRET_KEY": "k"}).with_secret().secret_key == "k"


def test_tokens_are_redacted_from_log_lines() -> None:
    import logging

    from server.logredact import RedactTokens, redact

    assert redact('"WebSocket /collab/1/2/3?token=clb_secret&x=1"') == \
        '"WebSocket /collab/1/2/3?token=***&x=1"'
    record = logging.LogRecord("uvicorn.error", logging.INFO, "f", 1,
                               '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5", "/collab/1/2/3?token=clb_secret"), None)
    assert RedactTokens().filter(record)
    assert "clb_secret" not in record.getMessage()


def test_a_worker_process_gets_the_serving_process_s_resolved_settings(tmp_path: Path) -> None:
    served = Settings.from_env({"COLABEL_DATA_DIR": str(tmp_path)}, port=8123, workers=3).with_secret()
    resolved = replace(served, database_url="postgresql://h/db", redis_url="unix:///r.sock")
    worker = Settings.from_env(resolved.environment())
    assert (worker.database_url, worker.redis_url) == ("postgresql://h/db", "unix:///r.sock")
    assert (worker.secret_key, worker.data_dir, worker.port, worker.workers) == (
        served.secret_key, tmp_path, 8123, 3)
    with pytest.raises(ConfigError):
        Settings.from_env({}, workers=0)
