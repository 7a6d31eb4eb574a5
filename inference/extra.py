"""Whether this installation can do ML assistance: the `ml` extra (torch, torchvision, Ray).

Asked without importing anything: the packages weigh about a gigabyte of memory once
imported, and a server with ML assistance off should not pay for them.
"""

from __future__ import annotations

import importlib.util

__all__ = ["INSTALL_HINT", "missing_packages", "unavailable_reason"]

REQUIRED = ("torch", "torchvision", "ray")
INSTALL_HINT = "install Colabel with its ml extra: pip install 'colabel[ml]' (make run does)"


def missing_packages() -> list[str]:
    """The packages of the `ml` extra that this Python cannot import."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def unavailable_reason() -> str | None:
    """Why ML assistance cannot run here, with how to enable it; None when it can."""
    missing = missing_packages()
    if not missing:
        return None
    return f"ML assistance is not installed on this server ({', '.join(missing)} missing): {INSTALL_HINT}"
