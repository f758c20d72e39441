"""How an invocation ends when the function did not answer it: Lambda's error payloads.

Function errors come from the runtime as they are; these are the ones the platform makes
(init failures, timeouts, a runtime that exited), in Lambda's errorMessage/errorType shape.
"""
from __future__ import annotations

import json
import signal

from chalicelib.model import Outcome


def lambda_error(message: str, error_type: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


def error_type_of(body: bytes, fallback: str) -> str:
    """The errorType the runtime reported in its error body, else `fallback`."""
    try:
        return json.loads(body).get("errorType") or fallback
    except Exception:
        return fallback


def exited(code: int | None, request_id: str) -> Outcome:
    """The runtime exited (or was killed) while the call was out."""
    how = f"signal: {signal_name(-code)}" if code is not None and code < 0 else f"exit status {code}"
    return Outcome("crash", lambda_error(
        f"RequestId: {request_id} Error: Runtime exited with error: {how}", "Runtime.ExitError"),
        "Runtime.ExitError")


def timed_out(request_id: str, timeout_s: float) -> Outcome:
    return Outcome("timeout", lambda_error(
        f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds", "Sandbox.Timedout"),
        "Sandbox.Timedout")


def init_timed_out(start_timeout_s: float) -> Outcome:
    return Outcome("init_error", lambda_error(
        f"container did not finish init within {start_timeout_s:.0f} s", "Runtime.InitTimeout"),
        "Runtime.InitTimeout")


def signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name.removeprefix("SIG").lower().replace("kill", "killed")
    except ValueError:
        return str(num)
