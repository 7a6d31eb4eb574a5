"""The version Colabel is installed as, for the API document and the logs."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def app_version() -> str:
    """The installed package's version; 0.0.0 when running from a bare checkout."""
    try:
        return version("colabel")
    except PackageNotFoundError:
        return "0.0.0"
