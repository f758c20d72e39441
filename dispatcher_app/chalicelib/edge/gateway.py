"""The front door's gateway: Chalice's local API Gateway, without its per-request rework on plain routes.

chalice.local's LocalGateway turns every HTTP request into an API Gateway proxy event by trying the
app's routes in turn, makes a LambdaContext from three config lookups, asks the authorizer, and
hands the event to Chalice, which builds a middleware chain and checks the request's content type
before it calls the view. Measured in one process, quiet: 90 us a request around a view that
takes 18 us; in a warm call's path, with caches cold between processes, 0.28 ms.

A *plain* route has no authorizer, no CORS and takes any content type (`*/*`), in an app without
middleware: none of those steps can change its answer. For such a route this gateway matches the
path once (then from a bounded cache), builds the same event, Request and LambdaContext, and runs
the rest as Chalice does, with Chalice's own code: RestAPIEventHandler's view call (its error
mapping included), its binary-response check and Response.to_dict. Everything else — other routes,
methods a route does not have, OPTIONS, paths no route matches — goes through LocalGateway as before.
tests/unit/test_gateway.py holds the two to the same answers.

One serves every connection (Server.gateway makes it once). chalice.local makes one per connection,
so a client that opens a connection per call (a burst, the CLI, `Connection: close`) paid
LocalGateway's set-up and matched its path and content types afresh, its caches thrown away after
one request: 16 us a call measured quiet, against 0.5 us from warm caches. Shared, it keeps no
request's state on itself: the caches are dicts, read with .get (another thread may clear one that
is full), and the handler that calls the view is made per request (Chalice keeps the current
request on it).
"""
from __future__ import annotations

from typing import Any

from chalice.app import (CaseInsensitiveMapping, Chalice, ChaliceUnhandledError, Request, RestAPIEventHandler,
                        RouteEntry, _matches_content_type, error_response)
from chalice.config import Config
from chalice.local import LambdaContext, LocalGateway, MatchResult

ANY_TYPE = "*/*"
MAX_CACHED_PATHS = 1024   # distinct request paths (one per function name and query) or content types remembered
_UNSEEN = object()


def is_plain(entry: RouteEntry) -> bool:
    return entry.authorizer is None and entry.cors is None and ANY_TYPE in entry.content_types


class LeanGateway(LocalGateway):
    """One for the server, shared by the connections' threads (the module's docstring)."""

    def __init__(self, app_object: Chalice, config: Config) -> None:
        super().__init__(app_object, config)
        # Middleware could be registered later, so it is looked at per request (a list, cheap).
        self._plain = {(path, method) for path, methods in app_object.routes.items()
                       for method, entry in methods.items() if is_plain(entry)}
        self._matches: dict[str, MatchResult | None] = {}
        timeout = config.lambda_timeout
        self._context_args = (config.function_name, config.lambda_memory_size,
                              (self.MAX_LAMBDA_EXECUTION_TIME if timeout is None else timeout) * 1000)
        self._binary_types: tuple[str, ...] = ()
        self._binary_of: dict[str, bool] = {}

    def _match(self, path: str) -> MatchResult | None:
        cached = self._matches.get(path, _UNSEEN)
        if cached is not _UNSEEN:
            return cached
        try:
            found: MatchResult | None = self.event_converter._route_matcher.match_route(path)
        except ValueError:
            found = None
        if len(self._matches) >= MAX_CACHED_PATHS:
            self._matches.clear()
        self._matches[path] = found
        return found

    def handle_request(self, method: str, path: str, headers: dict, body: bytes | None) -> dict[str, Any]:
        app = self._app_object
        found = self._match(path)
        if found is None or (found.route, method) not in self._plain or app.middleware_handlers:
            return super().handle_request(method, path, headers, body)
        entry = app.routes[found.route][method]
        context = LambdaContext(*self._context_args)
        event = self._event(method, path, headers, body, found)
        request = Request(event, context)
        app.lambda_context = context
        app.current_request = request
        rest = RestAPIEventHandler(app.routes, app.api, app.log, app.debug)
        rest.current_request, rest.lambda_context = request, context
        args = {name: found.captured[name] for name in entry.view_args}
        try:
            response = rest._get_view_function_response(entry.view_function, args)
        except ChaliceUnhandledError:   # for middleware to see; there is none: Chalice's 500
            response = rest._unhandled_exception_to_response()
        content_type = CaseInsensitiveMapping(response.headers).get("content-type")
        accept = request.headers.get("accept")
        # RestAPIEventHandler._validate_binary_response, with its content-type matches remembered
        if self._binary(content_type or "application/json") and not (accept is not None and self._binary(accept)):
            response = error_response(   # Chalice's words, from _main_rest_api_handler
                error_code="BadRequest", http_status_code=400,
                message=("Request did not specify an Accept header with %s, The response has a Content-Type "
                         "of %s. If a response has a binary Content-Type then the request must specify an "
                         "Accept header that matches." % (content_type, content_type)))
            content_type = None
        # Response.to_dict base64-encodes a body whose content type is binary ("" when none is set)
        return response.to_dict(app.api.binary_types if self._binary(content_type or "") else None)

    def _binary(self, content_type: str) -> bool:
        """chalice.app._matches_content_type(content_type, binary_types), remembered: it lower-cases
        each of the ~30 binary types on every call, three times a request."""
        types = tuple(self._app_object.api.binary_types)
        if types != self._binary_types:
            self._binary_types, self._binary_of = types, {}
        known = self._binary_of.get(content_type)
        if known is None:
            if len(self._binary_of) >= MAX_CACHED_PATHS:
                self._binary_of.clear()
            known = self._binary_of[content_type] = _matches_content_type(content_type, list(types))
        return known

    def _event(self, method: str, path: str, headers: dict, body: bytes | None, found: MatchResult) -> dict:
        """LambdaEventConverter.create_lambda_event's event, from a match already made (a binary
        body, base64-encoded there, takes Chalice's own converter)."""
        if self.event_converter._is_binary(headers) and body is not None:
            return LocalGateway._generate_lambda_event(self, method, path, headers, body)
        return {
            "requestContext": {"httpMethod": method, "resourcePath": found.route,
                               "identity": {"sourceIp": self.event_converter.LOCAL_SOURCE_IP},
                               "path": path.split("?")[0]},
            "headers": {k.lower(): v for k, v in headers.items()},
            "pathParameters": dict(found.captured),
            "stageVariables": {},
            "multiValueQueryStringParameters": dict(found.query_params) if found.query_params else None,
            "body": body,
        }
