"""Project roles and what each may do; instance admins act as owners everywhere."""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    LABELER = 1
    REVIEWER = 2
    OWNER = 3

    @classmethod
    def parse(cls, value: str) -> Role:
        return cls[value.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


ROLE_NAMES = ("owner", "reviewer", "labeler")
