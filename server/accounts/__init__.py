"""Accounts: users, passwords, sessions and API tokens, sign-in throttling, roles."""
