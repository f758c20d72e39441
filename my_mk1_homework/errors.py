"""Errors the client classes raise: one tree, each with a message that says what to do."""
from __future__ import annotations

import builtins


class Mk1Error(Exception):
    """Base of every mk1 client error."""

    def __init__(self, message: str, *, code: str = "", request_id: str = ""):
        super().__init__(message)
        self.message, self.code, self.request_id = message, code, request_id


class PermissionDenied(Mk1Error):
    """The user's IAM policies do not allow this call (403 AccessDeniedException)."""


class AuthenticationFailed(Mk1Error):
    """Unknown access key or a bad signature (403): re-run `make up` for fresh credentials."""


class Throttled(Mk1Error):
    """The function is at its reserved concurrency and its queue is full or the wait ran out (429)."""

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class FunctionError(Mk1Error):
    """The function itself failed (its handler raised, crashed, or failed to initialise)."""

    def __init__(self, error_type: str, error_message: str, **kw):
        super().__init__(f"{error_type}: {error_message}", **kw)
        self.error_type, self.error_message = error_type, error_message


class InvocationTimeout(FunctionError):
    """The function ran past its timeout (or a spawned call's result did not arrive in time)."""


class NotFound(Mk1Error):
    """No such function (or async request id)."""


class BadRequest(Mk1Error):
    """The request was malformed (400/413): the message says which part."""


class ConnectionError(Mk1Error, builtins.ConnectionError):
    """The dispatcher did not answer. Is mk1 running? Start it with `make up`."""
