"""mk1's one error tree. Each error carries Lambda's wire code and HTTP status; the call path
raises them and edge/answers.py alone turns them into Lambda's answers."""
from __future__ import annotations


class Mk1Error(Exception):
    status = 500
    code = "ServiceException"
    kind = "Service"             # Lambda's "Type" field: User or Service
    request_id: str | None = None   # set by the call path once the call has one (x-amzn-RequestId)

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.message = message
        self.extra = extra

    @classmethod
    def rebuilt(cls, status: int, code: str, kind: str, message: str, extra: dict) -> "Mk1Error":
        """An error raised on another dispatcher (cluster mode), carried back as plain data."""
        err = cls(message, **extra)
        err.status, err.code, err.kind = status, code, kind
        return err

    def as_data(self) -> dict:
        return {"status": self.status, "code": self.code, "kind": self.kind, "message": self.message,
                "extra": self.extra}

    def body(self) -> dict:
        return {"Type": self.kind, "message": self.message, **self.extra}


class UserError(Mk1Error):
    kind = "User"


class InvalidRequestContent(UserError):
    status, code = 400, "InvalidRequestContentException"


class InvalidParameterValue(UserError):
    status, code = 400, "InvalidParameterValueException"


class MethodNotAllowed(UserError):
    status, code = 405, "MethodNotAllowedException"


class RequestTooLarge(UserError):
    status, code = 413, "RequestTooLargeException"


class ResourceNotFound(UserError):
    status, code = 404, "ResourceNotFoundException"


class MissingAuthenticationToken(UserError):
    status, code = 403, "MissingAuthenticationTokenException"


class IncompleteSignature(UserError):
    status, code = 400, "IncompleteSignatureException"


class UnrecognizedClient(UserError):
    status, code = 403, "UnrecognizedClientException"


class InvalidSignature(UserError):
    status, code = 403, "InvalidSignatureException"


class AccessDenied(UserError):
    status, code = 403, "AccessDeniedException"


class TooManyRequests(UserError):
    status, code = 429, "TooManyRequestsException"

    def __init__(self, message: str, reason: str, retry_after: int = 1, after_wait: bool = False):
        super().__init__(message, Reason=reason, retryAfterSeconds=str(retry_after))
        self.retry_after = retry_after
        self.after_wait = after_wait   # it waited in the queue first (gets a usage record)


class ServiceUnavailable(Mk1Error):
    status, code = 503, "ServiceException"


class ClientGone(Exception):
    """The caller hung up while waiting; nothing to answer (edge/answers.py closes with 499)."""
