"""An HTTP request as the call path sees it, and Lambda's Invoke request read from it.

Parsing and validation only; answers are made in edge/answers.py."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from chalicelib.errors import InvalidParameterValue, InvalidRequestContent, RequestTooLarge

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024          # Lambda: 6 MB request payload (RequestResponse)
ASYNC_PAYLOAD_LIMIT = 1024 * 1024             # Lambda: 1 MB for Event invocations
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")


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
    function_ref: str
    qualifier: str | None
    invocation_type: str
    tail_log: bool
    payload: bytes


def new_request_id() -> str:
    return str(uuid.uuid4())


def parse_invoke(req: HttpRequest, function_ref: str) -> InvokeRequest:
    itype = req.headers.get("x-amz-invocation-type", "RequestResponse")
    if itype not in INVOCATION_TYPES:
        raise InvalidParameterValue(f"1 validation error detected: Value '{itype[:64]}' at 'invocationType' "
                                    f"failed to satisfy constraint: Member must satisfy enum value set: "
                                    f"[Event, RequestResponse, DryRun]")
    log_type = req.headers.get("x-amz-log-type", "None")
    if log_type not in ("None", "Tail"):
        raise InvalidParameterValue(f"Value '{log_type[:64]}' at 'logType' must be one of [None, Tail]")
    qualifiers = req.query.get("Qualifier") or []
    limit = ASYNC_PAYLOAD_LIMIT if itype == "Event" else SYNC_PAYLOAD_LIMIT
    if len(req.body) > limit:
        raise RequestTooLarge(f"Request must be smaller than {limit} bytes for the {itype} invocation type")
    payload = req.body or b"{}"
    try:
        json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequestContent("Could not parse request body into json: the payload is not valid "
                                    "JSON (send e.g. {\"prompt\": \"hi\"})") from None
    return InvokeRequest(function_ref, qualifiers[0] if qualifiers else None, itype, log_type == "Tail", payload)
