"""A project bound to an Azure Blob container (the Azurite emulator), through the API."""

from __future__ import annotations

import io
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient
from PIL import Image

from tests.azurite import ACCOUNT_KEY, ACCOUNT_NAME, AzuriteInfo, make_container, sas_for
from tests.conftest import PASSWORD, project_body
from tests.infra import Api, bound, free_port, run_server, unique, wait_job
from tests.reliability import Measured

MakeProject = Callable[..., tuple[Api, dict[str, Any]]]
HARMLESS_URL = f"https://{ACCOUNT_NAME}.blob.core.windows.net"
SAS = "sv=2024-08-04&sr=c&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig=c2lnbmF0dXJl"
NOT_STORAGE = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def redirect_to(port: int) -> bytes:
    return (f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/{ACCOUNT_NAME}/c"
            "?restype=container&comp=list\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ).encode()


class Listener:
    """A loopback port that counts every connection it accepts and answers each with `reply`."""

    def __init__(self, reply: bytes) -> None:
        self.connections = 0
        lock = threading.Lock()
        listener = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with lock:
                    listener.connections += 1
                self.request.settimeout(2)
                seen = b""
                try:
                    while b"\r\n\r\n" not in seen and len(seen) < 65536:
                        chunk = self.request.recv(4096)
                        if not chunk:
                            break
                        seen += chunk
                    self.request.sendall(reply)
                except OSError:
                    pass

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]

    def __enter__(self) -> Listener:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()


def connection_string(endpoint: str, *, sas: bool = False) -> str:
    credential = f"SharedAccessSignature={SAS}" if sas else (
        f"AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY}")
    return f"DefaultEndpointsProtocol=https;{credential};BlobEndpoint={endpoint}"


def azure_body(account_url: str, **credential: str) -> dict[str, Any]:
    return {"datastore": {"kind": "azure_blob", "account_url": account_url,
                          "container": "images", **credential}, "pattern": "**/*.*"}


@pytest.fixture(scope="module")
def strict_server(server: str, env: dict[str, str], data_dir: Path) -> Iterator[str]:
    """A second server on the run's database as deployed: no loopback or private opt-in."""
    strict = {k: v for k, v in env.items() if k != "COLABEL_AZURE_ALLOW_EMULATOR"}
    strict["COLABEL_BACKGROUND_JOBS"] = "false"
    with run_server(strict, [], data_dir / "strict-server.log") as (base, _proc, _took):
        yield base


@pytest.fixture
def strict_dataset(strict_server: str, make_user: Callable[..., Api]) -> tuple[Api, str]:
    """An owner signed in to the strict server, and their new project's dataset URL."""
    email = make_user("owner").user["email"]  # type: ignore[index]
    owner = Api(strict_server).login(email, PASSWORD)
    r = owner.post("/api/v1/projects", project_body())
    assert r.status_code == 201, r.text
    return owner, f"/api/v1/projects/{r.json()['project']['id']}/dataset"


def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), color).save(buf, "PNG")
    return buf.getvalue()


def store_body(info: AzuriteInfo, container: str, **cred: str) -> dict[str, Any]:
    return {"datastore": {"kind": "azure_blob", "account_url": info.account_url,
                          "container": container, "prefix": "set1/", **cred},
            "pattern": "**/*.*"}


async def test_bind_ingest_render_refresh_and_secrets_never_returned(
    azurite: AzuriteInfo, make_project: MakeProject,
) -> None:
    container = unique("c").replace("-", "")[:20]
    await make_container(azurite, container, {
        "set1/a.png": png((255, 0, 0)), "set1/sub/b.png": png((0, 255, 0)),
        "set1/readme.txt": b"hi", "other/c.png": png((0, 0, 255)),
    })
    owner, p = make_project()
    pid = p["id"]
    sas = sas_for(azurite, container)
    r = bound(owner, owner.put(f"/api/v1/projects/{pid}/dataset",
                               store_body(azurite, container, sas_token=sas)))
    assert r.status_code == 202 and r.ok, r.text
    assert r.ingest["added"] == 2 and r.ingest["skipped"] == 1
    # Neither the binding's reply, its job, nor any listing shows the credential.
    for payload in (r.text, owner.get(f"/api/v1/projects/{pid}").text,
                    owner.get("/api/v1/projects").text,
                    owner.get(f"/api/v1/projects/{pid}/jobs").text):
        assert "sig=" not in payload and sas not in payload
    assert r.json()["project"]["dataset"]["datastore"]["credential"] == "sas_token"
    listing = owner.get(f"/api/v1/projects/{pid}/items").json()["items"]
    assert [i["key"] for i in listing] == ["a.png", "sub/b.png"]
    media = owner.get(f"/api/v1/projects/{pid}/items/{listing[0]['id']}/media")
    assert media.status_code == 200 and media.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(media.content)) as img:
        assert img.getpixel((0, 0)) == (255, 0, 0)
    # Refresh sees a new blob and a deleted one.
    assert owner.post(f"/api/v1/projects/{pid}/start").status_code == 200
    async with ContainerClient.from_connection_string(azurite.connection_string, container) as cc:
        await cc.upload_blob("set1/new.png", png((1, 1, 1)))
        await cc.delete_blob("set1/sub/b.png")
    res = wait_job(owner, owner.post(f"/api/v1/projects/{pid}/refresh"))["result"]
    assert (res["added"], res["missing"]) == (1, 1)
    gone = owner.get(f"/api/v1/projects/{pid}/items/{listing[1]['id']}/media")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "media_missing"
    # A rotated credential is accepted after the start; a different container is not.
    r = owner.put(f"/api/v1/projects/{pid}/dataset",
                  store_body(azurite, container, account_key=azurite.account_key))
    assert r.status_code == 200 and r.json()["project"]["dataset"]["datastore"]["credential"] == "account_key"
    r = owner.put(f"/api/v1/projects/{pid}/dataset",
                  store_body(azurite, "another", account_key=azurite.account_key))
    assert r.status_code == 409


async def test_bad_credentials_and_targets_are_refused(azurite: AzuriteInfo,
                                                       make_project: MakeProject) -> None:
    container = unique("d").replace("-", "")[:20]
    await make_container(azurite, container, {"set1/a.png": png((3, 3, 3))})
    owner, p = make_project()
    url = f"/api/v1/projects/{p['id']}/dataset"
    wrong = "QUJD" * 22
    r = owner.put(url, store_body(azurite, container, account_key=wrong))
    assert r.status_code == 422 and r.json()["error"]["code"] == "datastore_error"
    assert wrong not in r.text
    r = owner.put(url, {"datastore": {"kind": "azure_blob", "account_url": "https://169.254.169.254",
                                      "container": "imgs", "sas_token": "x"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "address_not_allowed"
    r = owner.put(url, {"datastore": {"kind": "azure_blob",
                                      "account_url": "http://10.1.2.3:10000/devstoreaccount1",
                                      "container": "imgs", "sas_token": "x"}})
    assert r.status_code == 422
    assert owner.get(f"/api/v1/projects/{p['id']}").json()["project"]["dataset"] is None


@pytest.mark.reliability(
    area="Data sources",
    attack="Bound an Azure dataset with a harmless account URL and a connection string whose "
           "BlobEndpoint is a loopback port, by address and by name, once open and once closed",
    promise="No connection reaches the port, and the error is the same whether the port is "
            "open or closed")
def test_connection_string_endpoints_cannot_reach_loopback(
    strict_dataset: tuple[Api, str], measured: Measured,
) -> None:
    owner, url = strict_dataset
    with Listener(NOT_STORAGE) as listening:
        closed = free_port()
        for endpoint in ("http://127.0.0.1:{port}/" + ACCOUNT_NAME,
                         "https://localhost:{port}/" + ACCOUNT_NAME):
            bodies = []
            for port in (listening.port, closed):
                conn = connection_string(endpoint.format(port=port))
                r = owner.put(url, azure_body(HARMLESS_URL, connection_string=conn))
                assert r.status_code == 422, r.text
                assert str(port) not in r.text and ACCOUNT_KEY not in r.text
                bodies.append(r.json())
            assert bodies[0] == bodies[1], endpoint
            measured(f"{endpoint.split(':')[1].strip('/')}: 422 {bodies[0]['error']['code']}, "
                     "the same body for the open and the closed port")
        assert listening.connections == 0
    assert owner.get(url.removesuffix("/dataset")).json()["project"]["dataset"] is None
    measured(f"{listening.connections} connections reached the listener")


@pytest.mark.reliability(
    area="Data sources",
    attack="On an instance that allows the local emulator, pointed a connection string at a "
           "port answering with a redirect to a second port, and at one answering a plain 404",
    promise="Redirects are not followed (nothing reaches the second port), and an answer that "
            "is not Azure Storage's reads exactly like a closed port")
def test_redirects_are_not_followed_and_answers_tell_no_ports_apart(
    make_project: MakeProject, measured: Measured,
) -> None:
    owner, p = make_project()
    url = f"/api/v1/projects/{p['id']}/dataset"
    with Listener(NOT_STORAGE) as target, Listener(redirect_to(target.port)) as redirector, \
            Listener(NOT_STORAGE) as not_storage:
        bodies = {}
        for name, port in (("redirect", redirector.port), ("404", not_storage.port),
                           ("closed", free_port())):
            conn = connection_string(f"http://127.0.0.1:{port}/{ACCOUNT_NAME}")
            r = owner.put(url, azure_body(HARMLESS_URL, connection_string=conn))
            assert r.status_code == 422, r.text
            bodies[name] = r.json()
        assert redirector.connections >= 1 and not_storage.connections >= 1
        assert target.connections == 0
    assert bodies["redirect"] == bodies["404"] == bodies["closed"]
    assert bodies["closed"]["error"]["code"] == "datastore_error"
    measured(f"redirect target reached {target.connections} times; redirect, 404 and closed "
             f"port all answered 422 with one body: {bodies['closed']['error']['message']!r}")


@pytest.mark.reliability(
    area="Data sources",
    attack="Bound an Azure dataset whose account URL names a host that does not resolve",
    promise="Refused with the same error as an endpoint that resolves to a forbidden address")
def test_a_name_that_does_not_resolve_is_refused(
    strict_dataset: tuple[Api, str], measured: Measured,
) -> None:
    owner, url = strict_dataset
    nowhere = owner.put(url, azure_body(f"https://colabel-{unique('x')}.invalid/{ACCOUNT_NAME}",
                                        sas_token=SAS))
    loopback = owner.put(url, azure_body(f"https://localhost:{free_port()}/{ACCOUNT_NAME}",
                                         sas_token=SAS))
    assert nowhere.status_code == loopback.status_code == 422
    assert nowhere.json() == loopback.json()
    assert ".invalid" not in nowhere.text
    measured(f"422 {nowhere.json()['error']['code']}, the same body as for a loopback name")


@pytest.mark.reliability(
    area="Data sources",
    attack="Aimed every URL field at one listening loopback port: account URL with a SAS token, "
           "a SAS URL, account URL with an account key, a connection string with a SAS",
    promise="Each is vetted the same way: all refused with one body, no connection made")
def test_sas_urls_account_urls_and_connection_strings_are_vetted_alike(
    strict_dataset: tuple[Api, str], measured: Measured,
) -> None:
    owner, url = strict_dataset
    with Listener(NOT_STORAGE) as listening:
        endpoint = f"https://localhost:{listening.port}/{ACCOUNT_NAME}"
        bodies = []
        for body in (azure_body(endpoint, sas_token=SAS),
                     azure_body(f"{endpoint}?{SAS}", sas_token=SAS),
                     azure_body(endpoint, account_key=ACCOUNT_KEY),
                     azure_body(HARMLESS_URL, connection_string=connection_string(endpoint, sas=True))):
            r = owner.put(url, body)
            assert r.status_code == 422, r.text
            assert "sig=" not in r.text
            bodies.append(r.json())
        assert listening.connections == 0
    assert all(b == bodies[0] for b in bodies)
    measured(f"4 fields, one body (422 {bodies[0]['error']['code']}); "
             f"{listening.connections} connections reached the listener")


async def test_the_emulator_opt_in_lets_a_connection_string_reach_azurite(
    azurite: AzuriteInfo, make_project: MakeProject,
) -> None:
    container = unique("e").replace("-", "")[:20]
    await make_container(azurite, container, {"set1/a.png": png((5, 5, 5))})
    owner, p = make_project()
    r = bound(owner, owner.put(f"/api/v1/projects/{p['id']}/dataset",
                               store_body(azurite, container, connection_string=azurite.connection_string)))
    assert r.ok, r.text
    assert r.ingest["added"] == 1


async def test_the_dry_run_lists_the_container_and_names_bad_credentials(
    azurite: AzuriteInfo, make_project: MakeProject,
) -> None:
    container = unique("e").replace("-", "")[:20]
    await make_container(azurite, container, {"set1/a.png": png((1, 2, 3)),
                                              "set1/sub/b.png": png((4, 5, 6)),
                                              "set1/readme.txt": b"hi"})
    owner, p = make_project()
    sas = sas_for(azurite, container)
    r = owner.post("/api/v1/datasets/check", store_body(azurite, container, sas_token=sas))
    assert r.status_code == 200, r.text
    check = r.json()["check"]
    assert (check["matched"], check["skipped"], check["sample"]) == (2, 1, ["a.png", "sub/b.png"])
    assert sas not in r.text
    wrong = "QUJD" * 22
    r = owner.post("/api/v1/datasets/check", store_body(azurite, container, account_key=wrong))
    assert r.status_code == 422 and r.json()["error"]["code"] == "datastore_error"
    assert wrong not in r.text
    r = owner.post(f"/api/v1/projects/{p['id']}/dataset/check",
                   store_body(azurite, "absent", sas_token=sas))
    assert r.status_code == 422 and r.json()["error"]["code"] == "datastore_error"
    assert owner.get(f"/api/v1/projects/{p['id']}").json()["project"]["dataset"] is None
