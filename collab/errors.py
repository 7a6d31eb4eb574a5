"""Errors raised by the collaboration layer; the server maps them to close codes."""

from __future__ import annotations


class CollabError(Exception):
    """Base class for collaboration errors."""


class ProtocolError(CollabError):
    """A frame that does not follow the y-websocket protocol (close 1002)."""


class UnsupportedMessage(CollabError):
    """A well-formed frame of a type this server does not accept (close 1003)."""


class RoomUnavailable(CollabError):
    """The room could not be loaded (its stored state is unreachable right now)."""
