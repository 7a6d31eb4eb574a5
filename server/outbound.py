"""Which network addresses the server may connect to on a user's behalf.

A datastore URL comes from whoever binds a project, so every connection the server makes
to one is vetted: the URL's scheme and literal address before a request is sent, and each
address a host name resolves to at connect time (see datastores/vetted_http), so a name
cannot point the server at its own API, its Redis or a cloud metadata service, not even by
answering differently the second time it is asked.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from server.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.azure.com", "instance-data"}
)
# Cloud metadata services; refused whatever the settings allow.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


class AddressRefused(Exception):
    """A URL or address the outbound policy does not allow (the reason names no port)."""


def _unmapped(ip: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 reaches 127.0.0.1; judge it as what it reaches.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class OutboundPolicy:
    """Public addresses only, unless an instance admin allows loopback (the Azurite emulator)
    or private networks (a storage private endpoint)."""

    allow_loopback: bool = False
    allow_private: bool = False
    # How long to wait for the next bytes of an answer before giving up on the attempt: a
    # stalled storage service fails a refresh in about three times this, not in minutes.
    read_timeout_s: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls(allow_loopback=settings.azure_allow_emulator,
                   allow_private=settings.azure_allow_private,
                   read_timeout_s=settings.azure_read_timeout_s)

    def check_address(self, ip: IPAddress) -> None:
        """Raise AddressRefused unless the server may connect to `ip`."""
        ip = _unmapped(ip)
        if ip in _METADATA_ADDRESSES:
            raise AddressRefused("cloud metadata addresses are not allowed")
        if ip.is_loopback:
            if not self.allow_loopback:
                raise AddressRefused(
                    "loopback addresses are not allowed (an instance admin allows the Azurite "
                    "emulator with COLABEL_AZURE_ALLOW_EMULATOR)"
                )
            return
        if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
            raise AddressRefused("link-local, multicast and reserved addresses are not allowed")
        if not ip.is_global and not self.allow_private:
            raise AddressRefused(
                "private network addresses are not allowed (an instance admin allows storage "
                "private endpoints with COLABEL_AZURE_ALLOW_PRIVATE)"
            )

    def check_url(self, url: str) -> None:
        """Raise AddressRefused unless `url` is one the server may send a request to.

        Host names pass here and are judged by the addresses they resolve to when the
        connection is made."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower().rstrip(".")
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
        except ValueError:
            raise AddressRefused("the URL is malformed") from None
        if not host:
            raise AddressRefused("the URL has no host")
        scheme = parts.scheme.lower()
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        loopback = host in _LOOPBACK_NAMES or (literal is not None and _unmapped(literal).is_loopback)
        if scheme != "https" and not (scheme == "http" and loopback and self.allow_loopback):
            raise AddressRefused("only https:// URLs are allowed")
        if host in _METADATA_HOSTS or host.endswith(".internal"):
            raise AddressRefused("cloud metadata hosts are not allowed")
        if literal is not None:
            self.check_address(literal)
