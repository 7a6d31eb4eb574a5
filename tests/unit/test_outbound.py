from __future__ import annotations

import ipaddress

import pytest

from server.outbound import AddressRefused, OutboundPolicy

STRICT = OutboundPolicy()
EMULATOR = OutboundPolicy(allow_loopback=True)
PRIVATE = OutboundPolicy(allow_private=True)


@pytest.mark.parametrize("address, strict, emulator, private", [
    ("20.60.1.1", True, True, True),            # a public storage address
    ("2603:1030::1", True, True, True),
    ("127.0.0.1", False, True, False),
    ("127.5.6.7", False, True, False),
    ("::1", False, True, False),
    ("::ffff:127.0.0.1", False, True, False),   # IPv4-mapped loopback
    ("10.0.0.7", False, False, True),
    ("192.168.1.2", False, False, True),
    ("172.16.0.1", False, False, True),
    ("100.64.0.1", False, False, True),         # carrier-grade NAT
    ("fd12::1", False, False, True),            # unique local
    ("::ffff:10.0.0.7", False, False, True),
    ("169.254.169.254", False, False, False),   # metadata, whatever is allowed
    ("169.254.1.1", False, False, False),       # link-local
    ("fe80::1", False, False, False),
    ("fd00:ec2::254", False, False, False),
    ("100.100.100.200", False, False, False),
    ("0.0.0.0", False, False, False),
    ("224.0.0.1", False, False, False),
    ("240.0.0.1", False, False, False),
])
def test_addresses(address: str, strict: bool, emulator: bool, private: bool) -> None:
    ip = ipaddress.ip_address(address)
    for policy, allowed in ((STRICT, strict), (EMULATOR, emulator), (PRIVATE, private)):
        if allowed:
            policy.check_address(ip)
        else:
            with pytest.raises(AddressRefused):
                policy.check_address(ip)


@pytest.mark.parametrize("url, emulator_allows", [
    ("http://127.0.0.1:10000/devstoreaccount1", True),
    ("http://localhost:10000/devstoreaccount1", True),
    ("https://[::1]:10000/devstoreaccount1", True),
    ("http://account.blob.core.windows.net", False),   # http only for the local emulator
    ("http://10.0.0.5:10000/a", False),
    ("ftp://account.blob.core.windows.net", False),
    ("https://metadata.google.internal/", False),
    ("https://anything.internal/", False),
    ("https:///nohost", False),
    ("https://a.blob.core.windows.net:notaport/", False),
    ("https://[::1/", False),
])
def test_urls(url: str, emulator_allows: bool) -> None:
    with pytest.raises(AddressRefused):
        STRICT.check_url(url)
    if emulator_allows:
        EMULATOR.check_url(url)
    else:
        with pytest.raises(AddressRefused):
            EMULATOR.check_url(url)


def test_names_pass_the_url_check_and_are_judged_when_resolved() -> None:
    STRICT.check_url("https://account.blob.core.windows.net/container?sv=1&sig=x")
    STRICT.check_url("https://localhost:10000/devstoreaccount1")


def test_a_refusal_names_no_port() -> None:
    with pytest.raises(AddressRefused) as exc:
        STRICT.check_url("https://127.0.0.1:45678/a")
    assert "45678" not in str(exc.value) and "127.0.0.1" not in str(exc.value)
