"""How an invocation ends when the function did not answer it: Lambda's error payloads.

Function errors come from the runtime as they are; these are the ones the platform makes
(init failures, timeouts, a runtime that exited), in Lambda's errorMessage/errorType shape.
"""
from __future__ import annotations

import json
import signal

from chalicelib.model import Outcome


RESPONSE_LIMIT = 6 * 1024 * 1024 + 100   # bytes: AWS's limit on a function's answer (6291556)


def lambda_error(message: str, error_type: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def platform_error(message: str, error_type: str) -> bytes:
    """The platform's own errors (exit, timeout) come errorType first, as AWS writes them."""
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def response_too_large() -> Outcome:
    return Outcome("function_error", lambda_error(
        f"Response payload size exceeded maximum allowed payload size ({RESPONSE_LIMIT} bytes).",
        "Function.ResponseSizeTooLarge"), "Function.ResponseSizeTooLarge")


def error_type_of(body: bytes, fallback: str) -> str:
    """The errorType the runtime reported in its error body, else `fallback`."""
    try:
        return json.loads(body).get("errorType") or fallback
    except Exception:
        return fallback


def exited(code: int | None, request_id: str) -> Outcome:
    """The runtime exited (or was killed) while the call was out, in AWS's words: exit 0 is "without
    providing a reason", any other end names its status or signal."""
    if code == 0:
        why = "Runtime exited without providing a reason"
    else:
        how = f"signal: {signal_name(-code)}" if code is not None and code < 0 else f"exit status {code}"
        why = f"Runtime exited with error: {how}"
    return Outcome("crash", platform_error(f"RequestId: {request_id} Error: {why}", "Runtime.ExitError"),
                   "Runtime.ExitError")


def timed_out(request_id: str, timeout_s: float) -> Outcome:
    return Outcome("timeout", platform_error(
        f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds", "Sandbox.Timedout"),
        "Sandbox.Timedout")


def init_timed_out(start_timeout_s: float) -> Outcome:
    return Outcome("init_error", lambda_error(
        f"container did not finish init within {start_timeout_s:.0f} s", "Runtime.InitTimeout"),
        "Runtime.InitTimeout")


def restore_timed_out(limit_s: float) -> Outcome:
    """SnapStart: the runtime and its after-restore hooks did not finish within AWS's 10 s."""
    return Outcome("restore_error", lambda_error(
        f"Lambda couldn't restore the snapshot within the timeout limit ({limit_s:.0f} s).",
        "SnapStartTimeoutException"), "SnapStartTimeoutException")


def restore_failed(body: bytes) -> bytes:
    """The after-restore hook's own error (as the runtime reported it) under AWS's message."""
    try:
        detail = json.loads(body)
    except ValueError:
        detail = {}
    why = f" {detail.get('errorType')}: {detail.get('errorMessage')}" if detail.get("errorType") else ""
    return lambda_error("The afterRestore() runtime hook encountered an error. For more information, "
                        f"check the Amazon CloudWatch logs.{why}", "SnapStartException")


def signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name.removeprefix("SIG").lower().replace("kill", "killed")
    except ValueError:
        return str(num)
