"""Presence (awareness) states of a room, kept as raw entries.

States are stored as the client sends them (clock and JSON text): the server only checks
that the text is JSON and forwards it. An entry with the JSON text "null" is a removal.
"""

from __future__ import annotations

import orjson

from .errors import ProtocolError
from .protocol import read_varbytes, read_varuint, varbytes, write_varuint

NULL_STATE = b"null"


class AwarenessStates:
    """client id -> (clock, raw JSON state) for the clients present in a room."""

    def __init__(self) -> None:
        self._states: dict[int, tuple[int, bytes]] = {}

    def __len__(self) -> int:
        return len(self._states)

    def apply(self, update: bytes) -> tuple[bytes | None, list[int]]:
        """Apply an awareness update.

        Returns the part worth forwarding (only entries newer than what we had, as
        y-protocols decides; None if nothing changed) and the client ids seen here for
        the first time. Clients echo every presence change they receive, so without this
        filter each change would bounce around the room once per client.
        """
        count, pos = read_varuint(update, 0)
        entries: list[tuple[int, int, bytes]] = []
        for _ in range(count):
            client, pos = read_varuint(update, pos)
            clock, pos = read_varuint(update, pos)
            state, pos = read_varbytes(update, pos)
            entries.append((client, clock, state))
        if pos != len(update):
            raise ProtocolError("trailing bytes in awareness update")
        changed: list[tuple[int, int, bytes]] = []
        # What this update decides per client (None: removed), applied once all is valid.
        decided: dict[int, tuple[int, bytes] | None] = {}
        for client, clock, state in entries:
            known = decided[client] if client in decided else self._states.get(client)
            removal = state == NULL_STATE or not state
            if known is None:
                if removal:
                    continue
            elif known[0] > clock or (known[0] == clock and not removal):
                continue  # an echo or a stale state: most presence traffic, dropped unread
            if not removal:
                # A state that is kept is forwarded to every client, which parses it:
                # anything but JSON would break them.
                try:
                    orjson.loads(state)
                except orjson.JSONDecodeError:
                    raise ProtocolError("awareness state is not JSON") from None
            decided[client] = None if removal else (clock, state)
            changed.append((client, clock, state))
        added: list[int] = []
        for client, value in decided.items():
            if value is None:
                self._states.pop(client, None)
            else:
                if client not in self._states:
                    added.append(client)
                self._states[client] = value
        if not changed:
            return None, added
        if len(changed) == len(entries):
            return update, added
        out = bytearray(write_varuint(len(changed)))
        for client, clock, state in changed:
            out += write_varuint(client) + write_varuint(clock) + varbytes(state)
        return bytes(out), added

    def encode(self, clients: list[int] | None = None) -> bytes | None:
        """An update carrying the given clients' states (all when None), or None if empty."""
        ids = list(self._states) if clients is None else [c for c in clients if c in self._states]
        if not ids:
            return None
        out = bytearray(write_varuint(len(ids)))
        for client in ids:
            clock, state = self._states[client]
            out += write_varuint(client) + write_varuint(clock) + varbytes(state)
        return bytes(out)

    def removal(self, clients: list[int]) -> bytes | None:
        """An update removing `clients` (clock bumped past the last seen), applied here too."""
        present = [c for c in clients if c in self._states]
        if not present:
            return None
        out = bytearray(write_varuint(len(present)))
        for client in present:
            clock, _ = self._states.pop(client)
            out += write_varuint(client) + write_varuint(clock + 1) + varbytes(NULL_STATE)
        return bytes(out)
