"""Glue between the Chalice routes and the Dispatcher: request in, HttpResponse out."""
from __future__ import annotations

import json
import logging
import threading
from urllib.parse import parse_qs

from botocore.exceptions import ClientError

from chalicelib.errors import MethodNotAllowed, Mk1Error, ResourceNotFound, ServiceUnavailable
from chalicelib.request import HttpRequest, HttpResponse, at_once, error_response
from chalicelib.record import queries as usage_q

log = logging.getLogger("mk1.http")

# Set by server.py for each request: what Chalice does not expose (raw path + query, the socket).
CONNECTION = threading.local()
_DISPATCHER = None


def attach(dispatcher) -> None:
    global _DISPATCHER
    _DISPATCHER = dispatcher


def dispatcher():
    if _DISPATCHER is None:
        _attach_in_lambda()
    if _DISPATCHER is None:
        raise RuntimeError("the dispatcher is not attached (use chalicelib.edge.server)")
    return _DISPATCHER


_ATTACH_LOCK = threading.Lock()


def _attach_in_lambda() -> None:
    """Deployed with `chalice package` there is no server.py: build the Dispatcher on first use."""
    import os
    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return
    with _ATTACH_LOCK:
        if _DISPATCHER is None:
            from my_mk1_homework import settings
            from chalicelib.compose import Dispatcher
            attach(Dispatcher(settings.load()).start())


def request(app) -> HttpRequest:
    r = app.current_request
    raw = getattr(CONNECTION, "raw_path", None) or r.context.get("path", "/")
    path, _, query = raw.partition("?")
    # From the event's plain dict: Chalice's CaseInsensitiveMapping iterates through the Mapping ABC.
    headers = r.to_original_event().get("headers") or {}
    return HttpRequest(method=r.method, raw_path=path, query=parse_qs(query, keep_blank_values=True) if query else {},
                       headers={k.lower(): v for k, v in headers.items()}, body=r.raw_body or b"",
                       alive=getattr(CONNECTION, "alive", lambda: True),
                       later=getattr(CONNECTION, "later", None) or at_once)


def _json(status: int, obj) -> HttpResponse:
    return HttpResponse(status, json.dumps(obj, default=str).encode(), {"Content-Type": "application/json"})


def health() -> HttpResponse:
    d = _DISPATCHER
    if d is None:
        return _json(503, {"status": "starting"})
    return _json(200, {"status": "ok", "backend": d.backend.name, "functions": [c.name for c in d.registry.all()]})


def status() -> HttpResponse:
    d = dispatcher()
    return _json(200, {**d.status(), "queues": d.queue_depths()})


def _identity(req: HttpRequest):
    return dispatcher().authenticate(req)


def async_result(req: HttpRequest, request_id: str) -> HttpResponse:
    d = dispatcher()
    try:
        who = _identity(req)
        result = d.results.get(request_id)
        if result is None or (result.get("user") != who.user and not d.is_admin_reader(who)):
            raise ResourceNotFound(f"No async invocation {request_id} for user {who.user}")
        return _json(200, result)
    except Mk1Error as e:
        return error_response(e)


def _usage_records(req: HttpRequest):
    d = dispatcher()
    who = _identity(req)
    q = {k: v[0] for k, v in req.query.items() if v}
    user = q.get("user") or None
    if not d.is_admin_reader(who):
        user = who.user      # a user sees only their own usage
    return usage_q.query(d.ddb, user=user, function=q.get("function") or None,
                         since=q.get("since", ""), until=q.get("until", ""))


def usage(req: HttpRequest) -> HttpResponse:
    try:
        return _json(200, {"records": _usage_records(req)})
    except Mk1Error as e:
        return error_response(e)
    except ClientError as e:
        return error_response(ServiceUnavailable(f"the usage table cannot be read right now: {e}"))


def usage_report(req: HttpRequest) -> HttpResponse:
    d = dispatcher()
    try:
        rows = usage_q.report(_usage_records(req), d.s.MK1_PRICE_GB_SECOND, d.s.MK1_PRICE_PER_REQUEST)
        return _json(200, {"rows": rows, "price_gb_second": d.s.MK1_PRICE_GB_SECOND,
                           "price_per_request": d.s.MK1_PRICE_PER_REQUEST})
    except Mk1Error as e:
        return error_response(e)
    except ClientError as e:
        return error_response(ServiceUnavailable(f"the usage table cannot be read right now: {e}"))


def method_not_allowed() -> HttpResponse:
    return error_response(MethodNotAllowed("Invoke takes POST /2015-03-31/functions/{name}/invocations"))


def internal_error() -> HttpResponse:
    log.exception("unexpected error while answering a request")
    return error_response(Mk1Error("mk1 hit an internal error answering this request; the dispatcher "
                                   "log has the details"))


def metrics() -> HttpResponse:
    return HttpResponse(200, dispatcher().metrics.render(), {"Content-Type": "text/plain; version=0.0.4"})
