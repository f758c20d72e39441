"""mk1's user-facing package: call RuntimeAlpha and RuntimeBeta like Python objects.

    from my_mk1_homework import Alpha, Beta
    print(Alpha(user="user1").generate("hello"))
"""
from .client import Alpha, Beta, Call, Function, InvokeResult
from .errors import (AuthenticationFailed, BadRequest, ConnectionError, FunctionError, InvocationTimeout,
                     Mk1Error, NotFound, PermissionDenied, Throttled)

__all__ = ["Alpha", "Beta", "Call", "Function", "InvokeResult", "Mk1Error", "PermissionDenied",
           "AuthenticationFailed", "Throttled", "FunctionError", "InvocationTimeout", "NotFound",
           "BadRequest", "ConnectionError"]
