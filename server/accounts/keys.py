"""The Redis keys of accounts: sign-in failure counters, under the instance prefix."""

from __future__ import annotations


class AccountKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def login_failures_account(self, email: str) -> str:
        return f"{self.prefix}login:acct:{email.lower()}"

    def login_failures_address(self, address: str) -> str:
        return f"{self.prefix}login:addr:{address}"
