"""Errors of the data package that the API answers with."""

from __future__ import annotations

from server.errors import ApiError


class DatastoreUnavailable(ApiError):
    """The project's datastore could not be read (listing or fetching a file): a 502, since
    the fault lies with the store or its credentials, not with the request."""

    status = 502
    code = "datastore_error"
