"""An HTTP request as the call path sees it, and Lambda's Invoke request read from it.

Parsing and validation only; answers are made in edge/answers.py."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from chalicelib import validate
from chalicelib.errors import RequestTooLarge
from chalicelib.validate import FunctionRef

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024          # Lambda: 6 MB request payload (RequestResponse)
ASYNC_PAYLOAD_LIMIT = 1024 * 1024             # Lambda: 1 MB for Event invocations


def at_once(fn) -> None:
    fn()


@dataclass
class HttpRequest:
    method: str
    raw_path: str                    # URL-encoded, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]          # lower-case names
    body: bytes
    alive: object = lambda: True     # () -> bool: is the caller still connected?
    # (fn) -> None: run fn once the answer has been sent (bookkeeping the answer does not depend
    # on); where nothing sends it separately (a deployed Chalice app), fn runs at once.
    later: object = at_once


@dataclass
class InvokeRequest:
    function: FunctionRef
    qualifier: str | None            # the Qualifier parameter (the name may carry one too)
    invocation_type: str
    tail_log: bool
    payload: bytes
    client_context: str | None = None   # the JSON text of X-Amz-Client-Context (sync calls)
    trigger: str | None = None          # what invoked it, if not a caller (an event source mapping's ARN)
    stream: object | None = None        # model.ResponseStream: the caller takes the answer as it comes


def new_request_id() -> str:
    return str(uuid.uuid4())


def parse_invoke(req: HttpRequest, function_ref: str) -> InvokeRequest:
    """Invoke's members from the HTTP request, checked as AWS checks them (validate.py)."""
    itype = req.headers.get("x-amz-invocation-type", "RequestResponse")
    log_type = req.headers.get("x-amz-log-type", "None")
    qualifiers = req.query.get("Qualifier") or []
    qualifier = qualifiers[0] if qualifiers else None
    ref = validate.check_invoke(function_ref, qualifier, itype, log_type)
    body = req.body
    if itype == "Event" and len(body) > ASYNC_PAYLOAD_LIMIT:
        raise RequestTooLarge(f"{len(body)} byte payload is too large for the Event invocation type "
                              f"(limit {ASYNC_PAYLOAD_LIMIT} bytes)")
    if len(body) > SYNC_PAYLOAD_LIMIT:
        raise RequestTooLarge(f"Request must be smaller than {SYNC_PAYLOAD_LIMIT} bytes for the InvokeFunction "
                              f"operation")
    payload = body or b"{}"
    validate.check_json(payload)
    context = validate.client_context(req.headers.get("x-amz-client-context")) if itype == "RequestResponse" else None
    return InvokeRequest(ref, qualifier, itype, log_type == "Tail", payload, context)
