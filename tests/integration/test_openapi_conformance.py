"""The OpenAPI document is the truth: Schemathesis (every default check) fuzzes the live API,
as an admin, on a server and database of its own (it creates, changes and deletes whatever
the document lets it), and finds no server error and no answer the document does not
describe."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ADMIN_EMAIL, PASSWORD
from tests.infra import ROOT, Api, delete_keys, run_server, server_env
from tests.reliability import Measured

CONFIG = ROOT / "tests" / "schemathesis.toml"

# Examples per operation; COLABEL_FUZZ_EXAMPLES raises it for a longer hunt.
EXAMPLES = int(os.environ.get("COLABEL_FUZZ_EXAMPLES", "25"))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.reliability(
    area="API contract",
    attack="Schemathesis fuzzed every operation of the live API from its OpenAPI document "
           "(examples, coverage and fuzzing phases, every default check) as an admin.",
    promise="No 5xx, and every status, header, content type and body is one the document describes.")
def test_the_api_answers_as_its_document_says(fresh_database: Callable[[], str], redis_url: str,
                                               tmp_path: Path, measured: Measured,
                                               request: pytest.FixtureRequest) -> None:
    prefix = f"colabel-fuzz-{os.getpid()}:"
    request.addfinalizer(lambda: delete_keys(redis_url, prefix))
    env = server_env(fresh_database(), redis_url, prefix, tmp_path / "data",
                     COLABEL_LOGIN_MAX_FAILURES_ADDRESS="100000")
    subprocess.run([sys.executable, "-m", "server", "createuser", "--email", ADMIN_EMAIL, "--password",
                    PASSWORD, "--name", "Admin", "--admin"], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    with run_server(env, [], tmp_path / "server.log") as (base, _proc, _took):
        admin = Api(base).login(ADMIN_EMAIL, PASSWORD)
        token = admin.post("/api/v1/tokens", {"name": "fuzz"}).json()["token"]
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
             f"{base}/api/v1/openapi.json", "--checks", "all",
             "--max-examples", str(EXAMPLES), "--seed", "20261206", "--workers", "1",
             "--phases", "examples,coverage,fuzzing", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=840,
            env={**os.environ, "COLABEL_FUZZ_TOKEN": token}, check=False)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-12000:]
    summary = [line for line in out.splitlines() if "passed" in line or "operations" in line.lower()]
    measured("; ".join(summary[-2:]) or "no failures")
