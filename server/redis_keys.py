"""Every Redis key and pub/sub channel the server uses, under one configurable prefix."""

from __future__ import annotations


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def login_failures_account(self, email: str) -> str:
        return f"{self.prefix}login:acct:{email.lower()}"

    def login_failures_address(self, address: str) -> str:
        return f"{self.prefix}login:addr:{address}"

    def access_changes(self) -> str:
        """Pub/sub: a user's or a project's access changed; open sockets are checked again."""
        return f"{self.prefix}access:changes"
