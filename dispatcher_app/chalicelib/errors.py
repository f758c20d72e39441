"""mk1's one error tree. Each error carries Lambda's wire code, HTTP status and body shape; the call
path raises them and edge/answers.py alone turns them into Lambda's answers.

AWS's Lambda bodies differ per error, and clients read them as they are (recorded against AWS,
tests/conformance/): ResourceNotFoundException {"Type","Message"}, InvalidParameterValue and
InvalidRequestContent {"Type","message"}, TooManyRequests {"Reason","Type","message"},
ValidationException, InvalidSignature and UnrecognizedClient {"message"}, AccessDenied and
RequestEntityTooLarge {"Message"}. `message_key` and `typed` say which.
"""
from __future__ import annotations


class Mk1Error(Exception):
    status = 500
    code = "ServiceException"
    kind = "Service"             # Lambda's "Type" field: User or Service
    message_key = "Message"      # "Message" or "message", as AWS writes it for this error
    typed = True                 # the body carries "Type"
    request_id: str | None = None   # set by the call path once the call has one (x-amzn-RequestId)

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.message = message
        self.extra = extra

    @classmethod
    def rebuilt(cls, status: int, code: str, kind: str, message: str, extra: dict,
                message_key: str = "Message", typed: bool = True) -> "Mk1Error":
        """An error raised on another dispatcher (cluster mode), carried back as plain data."""
        err = cls(message, **extra)
        err.status, err.code, err.kind, err.message_key, err.typed = status, code, kind, message_key, typed
        return err

    def as_data(self) -> dict:
        return {"status": self.status, "code": self.code, "kind": self.kind, "message": self.message,
                "extra": self.extra, "message_key": self.message_key, "typed": self.typed}

    def body(self) -> dict:
        head = {"Type": self.kind} if self.typed else {}
        return {**head, self.message_key: self.message, **self.extra}


class UserError(Mk1Error):
    kind = "User"


class ValidationError(UserError):
    """The request breaks a constraint of Lambda's API model (patterns, lengths, enums)."""
    status, code, message_key, typed = 400, "ValidationException", "message", False


class InvalidRequestContent(UserError):
    status, code, message_key = 400, "InvalidRequestContentException", "message"


class InvalidParameterValue(UserError):
    status, code, message_key = 400, "InvalidParameterValueException", "message"


class MethodNotAllowed(UserError):
    status, code, message_key = 405, "MethodNotAllowedException", "message"


class RequestTooLarge(UserError):
    # AWS answers RequestEntityTooLargeException (botocore's model names RequestTooLargeException,
    # which never arrives) with {"Message": ...} only.
    status, code, typed = 413, "RequestEntityTooLargeException", False


class ResourceNotFound(UserError):
    status, code = 404, "ResourceNotFoundException"


class UnknownOperation(UserError):
    """A path and method no route serves."""
    status, code, message_key = 404, "UnknownOperationException", "message"


class MissingAuthenticationToken(UserError):
    status, code, message_key, typed = 403, "MissingAuthenticationTokenException", "message", False


class IncompleteSignature(UserError):
    status, code, message_key, typed = 400, "IncompleteSignatureException", "message", False


class UnrecognizedClient(UserError):
    status, code, message_key, typed = 403, "UnrecognizedClientException", "message", False


class InvalidSignature(UserError):
    status, code, message_key, typed = 403, "InvalidSignatureException", "message", False


class AccessDenied(UserError):
    status, code, typed = 403, "AccessDeniedException", False


class TooManyRequests(UserError):
    """AWS's body and message ("Rate Exceeded."); why mk1 refused (the queue is full, the wait was
    too long) travels beside it as `detail` (the X-Mk1-Detail header), so clients that branch on
    AWS's message still match."""
    status, code, message_key = 429, "TooManyRequestsException", "message"
    AWS_MESSAGE = "Rate Exceeded."

    def __init__(self, detail: str, reason: str, retry_after: int | None = 1, after_wait: bool = False):
        extra = {"Reason": reason}
        if retry_after is not None:   # the seed's queueing mode names a wait; AWS's mode sends none
            extra["retryAfterSeconds"] = str(retry_after)
        super().__init__(self.AWS_MESSAGE, **extra)
        self.detail = detail
        self.retry_after = retry_after
        self.after_wait = after_wait   # it waited in the queue first (gets a usage record)


class SnapStartFailed(UserError):
    """SnapStart: an after-restore hook raised (AWS's SnapStartException, 400)."""
    status, code = 400, "SnapStartException"


class SnapStartTimeout(UserError):
    """SnapStart: the runtime and its after-restore hooks took over 10 s (AWS: 408)."""
    status, code = 408, "SnapStartTimeoutException"


class ServiceUnavailable(Mk1Error):
    status, code = 503, "ServiceException"


class ClientGone(Exception):
    """The caller hung up while waiting; nothing to answer (edge/answers.py closes with 499)."""
