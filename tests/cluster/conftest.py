"""Fixtures of the cluster tests: a stack of three nodes behind nginx."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.stack import Stack, nginx_executable, start_stack


@pytest.fixture(scope="module")
def stack(fresh_database: Callable[[], str], redis_url: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Three nodes on a fresh database behind nginx, shared by a module's tests."""
    nginx_executable()
    s = start_stack(fresh_database(), redis_url, tmp_path_factory.mktemp("cluster"))
    yield s
    s.stop()


@pytest.fixture
def own_stack(fresh_database: Callable[[], str], redis_url: str,
              tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Stacks of a test's own (to kill and restart nodes in), stopped at its end."""
    nginx_executable()
    made: list[Stack] = []

    def make(**extra: str) -> Stack:
        s = start_stack(fresh_database(), redis_url, tmp_path / f"stack{len(made)}", env=extra)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()
