"""The Azurite blob emulator for tests: start it on a free port, seed containers, mint SAS tokens.

Azurite comes from the repo's package.json (`npm install` at the repo root puts it in
node_modules/.bin). It runs in memory, with telemetry off, so a test run contacts nothing
outside 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob.aio import BlobServiceClient

from tests.infra import ROOT, free_port, stop_process, tcp_open

AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT_NAME = "devstoreaccount1"
# Azurite's fixed, publicly documented development key; not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
UPLOAD_CONCURRENCY = 32


@dataclass(frozen=True)
class AzuriteInfo:
    account_url: str
    account_name: str
    account_key: str
    connection_string: str


def _log_tail(log: Path, n: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


@contextmanager
def run_azurite(workdir: Path, timeout_s: float = 30) -> Iterator[AzuriteInfo]:
    """Run azurite-blob on 127.0.0.1 (in memory) until the block exits."""
    if not AZURITE_BIN.exists():
        raise RuntimeError(
            f"Azurite is not installed ({AZURITE_BIN} is missing):"
            f" run `npm install` at the repo root ({ROOT})"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "azurite.log"
    port = free_port()
    cmd = [
        str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(port),
        # Azurite refuses --location together with --inMemoryPersistence; cwd=workdir keeps any
        # stray files it writes inside the test's folder instead.
        "--inMemoryPersistence",
        # The SDK sends a newer x-ms-version than Azurite knows; Azurite refuses it otherwise.
        "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while not tcp_open("127.0.0.1", port):
            if proc.poll() is not None:
                raise RuntimeError(f"azurite exited with {proc.returncode}:\n{_log_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"azurite not listening on port {port} after {timeout_s}s:\n{_log_tail(log)}"
                )
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/{ACCOUNT_NAME}"
        yield AzuriteInfo(
            account_url=url,
            account_name=ACCOUNT_NAME,
            account_key=ACCOUNT_KEY,
            connection_string=(
                f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
                f"AccountKey={ACCOUNT_KEY};BlobEndpoint={url};"
            ),
        )
    finally:
        stop_process(proc, 10)


async def make_container(info: AzuriteInfo, name: str, blobs: dict[str, bytes]) -> None:
    """Create container `name` and upload `blobs` (blob name -> content) into it."""
    async with BlobServiceClient.from_connection_string(info.connection_string) as service:
        container = await service.create_container(name)
        gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def upload(blob: str, data: bytes) -> None:
            async with gate:
                await container.upload_blob(blob, data, overwrite=True)

        await asyncio.gather(*(upload(b, d) for b, d in blobs.items()))


def sas_for(info: AzuriteInfo, container: str, *, permission: str = "rl") -> str:
    """A container SAS token (read + list by default) valid for one hour."""
    return generate_container_sas(
        info.account_name,
        container,
        account_key=info.account_key,
        permission=ContainerSasPermissions.from_string(permission),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
