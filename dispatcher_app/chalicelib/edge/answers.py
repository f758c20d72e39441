"""The one place where the call path's results and errors become Lambda's wire answers.

Views return a domain result (model.SyncResult, Accepted, DryRunPassed), plain data for a JSON
answer (JsonAnswer) or a ready HttpResponse (metrics text); they raise the one error tree
(errors.py). `answered` wraps every route: nothing else in the dispatcher makes an answer.
"""
from __future__ import annotations

import base64
import functools
import json
import logging
from dataclasses import dataclass, field

from chalice import Response

from my_mk1_homework import run_header

from chalicelib.errors import ClientGone, Mk1Error
from chalicelib.model import Accepted, DryRunPassed, SyncResult

log = logging.getLogger("mk1.answers")

TAIL_BYTES = 4096     # Lambda's LogResult: the last 4 KB of the log


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class JsonAnswer:
    obj: object
    status: int = 200


def answered(view):
    """A Chalice view's wrapper: its result or error as Lambda's answer, never Chalice's own error
    page or a traceback."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            resp = to_http(view(*args, **kwargs))
        except ClientGone:
            resp = HttpResponse(499)   # nobody is listening; the connection closes
        except Mk1Error as e:
            resp = error_response(e, e.request_id)
        except Exception:
            log.exception("unexpected error while answering a request")
            resp = error_response(Mk1Error("mk1 hit an internal error answering this request; the "
                                           "dispatcher log has the details"))
        return Response(body=resp.body, status_code=resp.status, headers=resp.headers)
    return wrapper


def to_http(result) -> HttpResponse:
    if isinstance(result, SyncResult):
        return sync_response(result)
    if isinstance(result, Accepted):
        return HttpResponse(202, b"", {"x-amzn-RequestId": result.request_id})
    if isinstance(result, DryRunPassed):
        return HttpResponse(204, b"", {"x-amzn-RequestId": result.request_id})
    if isinstance(result, JsonAnswer):
        return HttpResponse(result.status, json.dumps(result.obj, default=str).encode(),
                            {"Content-Type": "application/json"})
    if isinstance(result, HttpResponse):
        return result
    raise TypeError(f"a view returned {type(result).__name__}, which has no wire answer")


def sync_response(result: SyncResult) -> HttpResponse:
    headers = {"x-amzn-RequestId": result.request_id, "X-Amz-Executed-Version": result.executed_version,
               "Content-Type": "application/json", run_header.NAME: run_header.format_run(result.run)}
    if result.function_error:
        headers["X-Amz-Function-Error"] = "Unhandled"
    if result.log_lines is not None:
        headers["X-Amz-Log-Result"] = tail(result.log_lines)
    return HttpResponse(200, result.payload, headers)


def error_response(err: Mk1Error, request_id: str | None = None) -> HttpResponse:
    headers = {"x-amzn-ErrorType": err.code, "Content-Type": "application/json"}
    if request_id:
        headers["x-amzn-RequestId"] = request_id
    if err.status == 429 and err.extra.get("retryAfterSeconds"):
        headers["Retry-After"] = err.extra["retryAfterSeconds"]
    detail = getattr(err, "detail", None)
    if detail:
        headers["X-Mk1-Detail"] = safe_header(detail)
    return HttpResponse(err.status, json.dumps(err.body()).encode(), headers)


def tail(lines: list[str]) -> str:
    data = ("\n".join(lines) + "\n").encode("utf-8", "replace")[-TAIL_BYTES:]
    return base64.b64encode(data).decode()


def safe_header(value: str) -> str:
    """Never echo CR/LF into a header (header injection)."""
    return value.replace("\r", " ").replace("\n", " ")[:1024]
