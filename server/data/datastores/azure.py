"""A datastore over one Azure Blob Storage container (optionally under a prefix)."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob.aio import ContainerClient, ExponentialRetry

from server.data.datastores.base import (
    DatastoreError,
    KeyNotFound,
    ObjectInfo,
    ObjectTooLarge,
    UnsafeKey,
)
from server.data.datastores.vetted_http import VettedTransport
from server.outbound import AddressRefused, OutboundPolicy

logger = logging.getLogger(__name__)

# The SDK's default retry waits 15 s, 18 s, 24 s: far too long for a listing a person waits on.
_RETRY_TOTAL = 2
_RETRY_INITIAL_BACKOFF_S = 1
_RETRY_INCREMENT_BASE_S = 2
_CONNECTION_TIMEOUT_S = 10
# 403s where the credential is valid but not allowed this operation (others mean a bad credential).
_PERMISSION_CODES = frozenset({
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "AuthorizationServiceMismatch",
})
# Said for every way of not reaching a storage service (address refused, no such host, no
# connection, a broken one, an answer that is not Azure Storage's): telling them apart would
# tell a caller which addresses and ports answer.
UNREACHABLE = ("Azure Blob: could not reach a storage service at this endpoint; check the URL "
               "and that it is a public Azure Blob Storage address")


def account_name_from_url(account_url: str) -> str:
    """The storage account name in an account URL (host label, or path for emulator-style URLs)."""
    parts = urlsplit(account_url)
    host = (parts.hostname or "").lower()
    if ".blob.core." in host:
        return host.split(".", 1)[0]
    segment = parts.path.strip("/").split("/", 1)[0]
    if segment:
        return segment
    raise DatastoreError(
        "Azure Blob: cannot tell the storage account name from the account URL;"
        " use https://<account>.blob.core.windows.net or a connection string"
    )


def check_key(key: str, *, allow_empty: bool = False) -> None:
    """Raise UnsafeKey for a key that is absolute, climbs with '..', or holds '\\' or NUL."""
    if not key and not allow_empty:
        raise UnsafeKey("empty key")
    if key.startswith("/") or "\\" in key or "\x00" in key or ".." in key.split("/"):
        raise UnsafeKey(f"unsafe key {key!r}: keys are relative and cannot contain '..', '\\' or NUL")


def _from_storage(exc: AzureError | AddressRefused) -> bool:
    """Whether `exc` is an answer from Azure Storage (every one carries a request id)."""
    if isinstance(exc, AddressRefused | ServiceRequestError | ServiceResponseError):
        return False
    response = getattr(exc, "response", None)
    if response is None:
        return True  # raised by the SDK itself, before or without a request
    return "x-ms-request-id" in response.headers


class AzureBlobDatastore:
    """Blobs of one container as a Datastore; keys are blob names relative to `prefix`."""

    def __init__(
        self,
        account_url: str,
        container: str,
        prefix: str = "",
        *,
        sas_token: str | None = None,
        account_key: str | None = None,
        connection_string: str | None = None,
        page_size: int = 5000,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        given = [n for n, v in (("sas_token", sas_token), ("account_key", account_key),
                                ("connection_string", connection_string)) if v]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of sas_token, account_key or connection_string"
                f" (got {', '.join(given) or 'none'})"
            )
        self.account_url = account_url.rstrip("/")
        self.container = container
        self.prefix = prefix.strip("/")
        self.page_size = page_size
        options = _client_options(outbound or OutboundPolicy())
        self._client: ContainerClient
        if connection_string:
            self._client = _client_from_connection_string(connection_string, container, options)
        else:
            credential = _credential(self.account_url, sas_token, account_key)
            self._client = _client_from_url(self.account_url, container, credential, options)

    @classmethod
    def from_binding(cls, store: dict[str, Any],
                     outbound: OutboundPolicy | None = None) -> AzureBlobDatastore:
        """The datastore for a stored `azure_blob` binding (see dataset_binding)."""
        return cls(
            store["account_url"],
            store["container"],
            store.get("prefix", ""),
            sas_token=store.get("sas_token"),
            account_key=store.get("account_key"),
            connection_string=store.get("connection_string"),
            outbound=outbound,
        )

    def endpoints(self) -> list[str]:
        """The URLs the SDK may send requests to (from a connection string, its endpoints)."""
        urls = []
        for host in (self._client.primary_hostname, self._client.secondary_hostname):
            # A secondary endpoint from a connection string is kept as the full URL given.
            if host:
                urls.append(host if "://" in host else f"{self._client.scheme}://{host}")
        return urls

    async def __aenter__(self) -> AzureBlobDatastore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _blob_name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self) -> str:
        return f"container {self.container!r}"

    def _translate(self, exc: AzureError | AddressRefused, key: str | None) -> DatastoreError:
        # Messages carry only status and error code: SDK messages can echo request details.
        where = self._where()
        status = getattr(exc, "status_code", None)
        raw_code = getattr(exc, "error_code", None)
        # The SDK gives a StorageErrorCode enum for known codes, a plain str otherwise.
        code = str(getattr(raw_code, "value", raw_code)) if raw_code else None
        logger.debug("azure blob error on %s: %s status=%s code=%s", where, type(exc).__name__, status, code)
        if not _from_storage(exc):
            # The cause is for the operator's log only; type names and policy reasons
            # carry no credential.
            logger.info("azure blob: no storage service reached for %s: %s", where,
                        exc if isinstance(exc, AddressRefused) else type(exc).__name__)
            return DatastoreError(UNREACHABLE)
        if isinstance(exc, ResourceNotFoundError):
            if key is not None and code != "ContainerNotFound":
                return KeyNotFound(f"Azure Blob: no blob {key!r} in {where}")
            return DatastoreError(f"Azure Blob: {where} does not exist")
        detail = f" ({code})" if code else ""
        if status == 403 and code in _PERMISSION_CODES:
            return DatastoreError(
                f"Azure Blob: access denied for {where}{detail};"
                " the credential needs read and list permission on it"
            )
        if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            return DatastoreError(
                f"Azure Blob: authentication failed for {where}{detail}; check the credential"
            )
        if isinstance(exc, ResourceModifiedError):
            return DatastoreError(f"Azure Blob: blob {key!r} in {where} changed while being read")
        if isinstance(exc, HttpResponseError):
            return DatastoreError(f"Azure Blob: request on {where} failed (HTTP {status}{detail})")
        return DatastoreError(f"Azure Blob: request on {where} failed ({type(exc).__name__})")

    @contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        try:
            yield
        except (AzureError, AddressRefused) as exc:
            raise self._translate(exc, key) from None

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every key under the folder `prefix`, in Azure's (lexicographic) listing order."""
        check_key(prefix, allow_empty=True)
        folder = prefix.strip("/")
        start = "/".join(p for p in (self.prefix, folder) if p)
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._errors():
            async for name in self._client.list_blob_names(
                name_starts_with=f"{start}/" if start else None, results_per_page=self.page_size
            ):
                if name.endswith("/"):
                    continue  # a "directory marker" written by some tools, not a file
                yield name[strip:]

    async def head(self, key: str) -> ObjectInfo:
        """Size, ETag (unquoted) and modification time of one blob."""
        check_key(key)
        with self._errors(key):
            props = await self._client.get_blob_client(self._blob_name(key)).get_blob_properties()
        return ObjectInfo(key=key, size=int(props.size), etag=str(props.etag).strip('"'),
                          modified=props.last_modified)

    async def read(self, key: str, max_bytes: int) -> bytes:
        """The blob's bytes; DatastoreError if it is larger than `max_bytes`."""
        check_key(key)
        blob = self._client.get_blob_client(self._blob_name(key))
        with self._errors(key):
            props = await blob.get_blob_properties()
            if props.size > max_bytes:
                raise DatastoreError(
                    f"Azure Blob: {key!r} is {props.size} bytes, more than the {max_bytes} allowed"
                )
            # Pinning the ETag keeps a blob rewritten since the size check from slipping through.
            stream = await blob.download_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified)
            data: bytes = await stream.readall()
        if len(data) > max_bytes:
            raise ObjectTooLarge(f"Azure Blob: {key!r} is larger than the {max_bytes} bytes allowed")
        return data

    async def check_access(self) -> None:
        """Make one cheap request; DatastoreError if the container is missing, unreachable or forbidden."""
        with self._errors():
            # No retries: a person waits on this check, and a failure is best reported at once.
            async for _ in self._client.list_blob_names(results_per_page=1, retry_total=0):
                break

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._client.close()


def _client_options(outbound: OutboundPolicy) -> dict[str, Any]:
    """The SDK client's retry, timeouts and transport: only vetted addresses, no redirects."""
    return {
        "retry_policy": ExponentialRetry(
            initial_backoff=_RETRY_INITIAL_BACKOFF_S,
            increment_base=_RETRY_INCREMENT_BASE_S,
            retry_total=_RETRY_TOTAL,
            random_jitter_range=1,
        ),
        "connection_timeout": _CONNECTION_TIMEOUT_S,
        "read_timeout": outbound.read_timeout_s,
        "transport": VettedTransport(outbound, connection_timeout=_CONNECTION_TIMEOUT_S,
                                     read_timeout=outbound.read_timeout_s),
        "permit_redirects": False,
    }


def _client_from_connection_string(connection_string: str, container: str,
                                   options: dict[str, Any]) -> ContainerClient:
    try:
        return ContainerClient.from_connection_string(connection_string, container, **options)
    except ValueError:
        # The SDK's message may quote the connection string, secret included.
        raise DatastoreError("Azure Blob: the connection string is malformed") from None


def _credential(account_url: str, sas_token: str | None,
                account_key: str | None) -> str | dict[str, str]:
    """The SDK credential for an account key (with the account's name) or a SAS token."""
    if account_key:
        try:
            base64.b64decode(account_key, validate=True)
        except (binascii.Error, ValueError):
            raise DatastoreError("Azure Blob: the account key is not valid base64") from None
        return {"account_name": account_name_from_url(account_url), "account_key": account_key}
    assert sas_token is not None
    return sas_token.lstrip("?")


def _client_from_url(account_url: str, container: str, credential: str | dict[str, str],
                     options: dict[str, Any]) -> ContainerClient:
    try:
        return ContainerClient(account_url, container, credential=credential, **options)
    except ValueError:
        # The SDK's message may quote the URL, and a SAS in its query string.
        raise DatastoreError("Azure Blob: the account URL is not valid") from None
