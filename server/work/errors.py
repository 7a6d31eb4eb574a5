"""Why a lease operation cannot be done: 409 for what the caller asked, 503 while the
queue is being rebuilt (try again)."""

from __future__ import annotations

from server.errors import ApiError


class WorkError(ApiError):
    """A lease, submit or decision that cannot be done; `code` says why."""

    status = 409
    code = "conflict"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


class QueueBusy(WorkError):
    """The project's queue is being rebuilt from Postgres by another caller."""

    status = 503

    def __init__(self) -> None:
        super().__init__("dispatcher_busy", "the work queue is being rebuilt; try again")


class LeaseNotFound(WorkError):
    """No such lease of the caller's (or not in the project it is submitted for)."""

    status = 404

    def __init__(self) -> None:
        super().__init__("not_found", "lease not found")
