"""Glue between the Chalice routes and the dispatcher: the request in, a result out.

Each view returns what the dispatcher's parts return (a domain result or plain data) and lets
their errors rise: edge/answers.py's `answered` makes every answer."""
from __future__ import annotations

import threading
from urllib.parse import parse_qs

from chalicelib.edge.answers import HttpResponse, JsonAnswer
from chalicelib.errors import MethodNotAllowed
from chalicelib.request import HttpRequest, at_once

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


def invoke(app, name: str):
    return dispatcher().invoker.invoke(request(app), name)


def function_url(handler_request: HttpRequest, host: str, stream=None):
    """A request to a function URL's host (invoke_url.py): its answer, whatever the path."""
    return dispatcher().urls.serve(handler_request, host, stream)


def function_url_mode(host: str) -> str:
    return dispatcher().urls.mode(host)


def function_url_cors(host: str, origin: str | None) -> list[tuple[str, str]]:
    from chalicelib.invoke_url import cors_for
    return cors_for(dispatcher().urls, host, origin)


def invoke_stream(handler_request: HttpRequest, name: str, stream):
    return dispatcher().invoker.invoke_stream(handler_request, name, stream)


def method_not_allowed():
    raise MethodNotAllowed("Invoke takes POST /2015-03-31/functions/{name}/invocations")


def health():
    d = _DISPATCHER
    if d is None:
        return JsonAnswer({"status": "starting"}, 503)
    return JsonAnswer(d.queries.health())


def status():
    return JsonAnswer(dispatcher().queries.status())


def async_result(app, request_id: str):
    return JsonAnswer(dispatcher().queries.async_result(request(app), request_id))


def usage(app):
    return JsonAnswer({"records": dispatcher().queries.usage(request(app))})


def usage_report(app):
    return JsonAnswer(dispatcher().queries.usage_report(request(app)))


def metrics():
    return HttpResponse(200, dispatcher().metrics.render(), {"Content-Type": "text/plain; version=0.0.4"})
