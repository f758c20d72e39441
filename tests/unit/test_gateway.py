"""The lean gateway (chalicelib/edge/gateway.py) against chalice.local's LocalGateway, on the real app:
the same answers, the same event and Request seen by the view, the same errors, for plain routes
and for everything it hands to LocalGateway."""
import pytest
from chalice.config import Config
from chalice.local import ForbiddenError, LocalGateway, create_local_server

from chalicelib.edge import server, views as http
from chalicelib.edge.gateway import MAX_CACHED_PATHS, LeanGateway
from chalicelib.edge.answers import HttpResponse

INVOKE = "/2015-03-31/functions/RuntimeAlpha/invocations"
SIGNED = {"Host": "127.0.0.1:5000", "X-Amz-Date": "20261201T120000Z", "Content-Length": "2",
          "Authorization": "AWS4-HMAC-SHA256 Credential=AKIA/20261201/us-east-1/lambda/aws4_request, "
                           "SignedHeaders=host;x-amz-date, Signature=" + "a" * 64,
          "User-Agent": "Boto3/1.35.0", "X-Amz-Invocation-Type": "RequestResponse"}


class Recording:
    """The dispatcher, as the views see it: records what each view was given, answers `answer`."""

    def __init__(self, app):
        self.app, self.seen, self.answer = app, [], HttpResponse(200, b'{"ok": 1}', {"Content-Type": "application/json"})
        self.invoker = self   # views call dispatcher().invoker.invoke(request, name)

    def invoke(self, req, name):
        r = self.app.current_request
        self.seen.append((name, req.method, req.raw_path, req.query, req.headers, req.body,
                          r.to_original_event(), r.to_dict(), r.lambda_context.memory_limit_in_mb))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture(scope="module")
def app():
    a = server.load_app()
    create_local_server(a, Config(), "127.0.0.1", 0)   # current_request per thread, as served
    return a


@pytest.fixture
def both(app):
    rec = Recording(app)
    http.attach(rec)
    yield LocalGateway(app, Config()), LeanGateway(app, Config()), rec
    http.attach(None)


def _answers(both, method, path, headers=SIGNED, body=b"{}", times=2):
    """(LocalGateway's answer, the lean one's, repeated: the second goes through its cache), and
    what the views saw, pairwise."""
    chalice_gw, lean, rec = both
    out = []
    for gw in (chalice_gw, lean):
        got = []
        for _ in range(times):
            try:
                got.append(gw.handle_request(method=method, path=path, headers=dict(headers), body=body))
            except ForbiddenError as e:
                got.append(("forbidden", e.CODE, e.body))
        out.append(got)
    n = len(rec.seen) // 2
    return out[0], out[1], rec.seen[:n], rec.seen[n:]


@pytest.mark.parametrize("method,path,headers,body", [
    ("POST", INVOKE, SIGNED, b"{}"),
    ("POST", INVOKE + "?Qualifier=%24LATEST&x=1&x=2", SIGNED, b"{}"),
    ("POST", INVOKE + "/", SIGNED, b"{}"),
    ("POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3AB/invocations", SIGNED, b"{}"),
    ("POST", INVOKE, {**SIGNED, "content-type": "application/octet-stream"}, b"\x00\xff"),  # base64 event
    ("POST", INVOKE, {**SIGNED, "Content-Type": "text/plain"}, b"hi"),
    ("POST", INVOKE, SIGNED, None),
    ("GET", INVOKE, SIGNED, None),        # the route's wrong-method view
    ("HEAD", INVOKE, SIGNED, None),       # a method the route lacks: Chalice's 405
    ("OPTIONS", INVOKE, SIGNED, None),    # preflight: Chalice's own answer
    ("GET", "/health", SIGNED, None),     # not plain (JSON only): LocalGateway
    ("GET", "/health", {**SIGNED, "Content-Type": "text/plain"}, None),   # Chalice's 415
    ("GET", "/nowhere", SIGNED, None),    # no route: Chalice's 403 (with Authorization)
    ("GET", "/nowhere", {"Host": "x"}, None),
])
def test_same_answer_and_same_request_as_chalice(both, method, path, headers, body):
    chalice_answers, lean_answers, chalice_seen, lean_seen = _answers(both, method, path, headers, body)
    assert lean_answers == chalice_answers
    assert lean_seen == chalice_seen


@pytest.mark.parametrize("content_type,accept", [
    ("application/octet-stream", None),                    # binary, not accepted: Chalice's 400
    ("application/octet-stream", "application/octet-stream"),   # accepted: base64 body
    ("image/png", "*/*"),
    ("", None),
    ("text/plain", None),
])
def test_binary_answers_as_chalice(both, content_type, accept):
    rec = both[2]
    rec.answer = HttpResponse(200, b"\x00\x01binary", {"Content-Type": content_type} if content_type else {})
    headers = {**SIGNED, **({"Accept": accept} if accept else {})}
    chalice_answers, lean_answers, _, _ = _answers(both, "POST", INVOKE, headers)
    assert lean_answers == chalice_answers
    assert {a["statusCode"] for a in lean_answers} == ({400} if content_type == "application/octet-stream"
                                                        and not accept else {200})


def test_a_view_that_raises_is_chalice_guarded_500(both):
    both[2].answer = RuntimeError("boom")
    chalice_answers, lean_answers, _, _ = _answers(both, "POST", INVOKE, times=1)
    assert lean_answers == chalice_answers
    assert lean_answers[0]["statusCode"] == 500   # app.py's guard: Lambda's ServiceException


def test_middleware_sends_every_request_through_chalice(app, both):
    """Middleware registered after start: the lean path steps aside (Chalice runs it)."""
    calls = []

    @app.middleware("http")
    def count(event, get_response):
        calls.append(event.path)
        return get_response(event)
    try:
        chalice_answers, lean_answers, _, _ = _answers(both, "POST", INVOKE, times=1)
    finally:
        app.middleware_handlers.clear()
    assert lean_answers == chalice_answers and len(calls) == 2


def test_one_gateway_serves_concurrent_connections(app):
    """The server's connections share one gateway (Server.gateway): requests on many threads at
    once each reach the view as themselves, and each answer is its own request's, while the path
    cache fills and is cleared (more distinct paths than MAX_CACHED_PATHS)."""
    import threading
    from chalice.local import LocalDevServer

    class Echo:
        def __init__(self):
            self.invoker = self

        def invoke(self, req, name):
            seen = app.current_request.to_original_event()["requestContext"]["path"]
            return HttpResponse(200, f'{{"name": "{name}", "path": "{seen}", "raw": "{req.raw_path}"}}'.encode(),
                                {"Content-Type": "application/json"})
    dev = LocalDevServer(app, Config(), "127.0.0.1", 0, handler_cls=server.Handler, server_cls=server.Server)
    try:
        gateway = dev.server.gateway(app, Config())
        assert dev.server.gateway(app, Config()) is gateway
        http.attach(Echo())
        wrong, start = [], threading.Barrier(8)

        def caller(k: int) -> None:
            start.wait()
            for i in range(MAX_CACHED_PATHS // 4):
                path = f"/2015-03-31/functions/F{k}-{i}/invocations"
                got = gateway.handle_request(method="POST", path=path, headers=dict(SIGNED), body=b"{}")
                if got["body"] != f'{{"name": "F{k}-{i}", "path": "{path}", "raw": "{path}"}}'.encode():
                    wrong.append(got["body"])
        threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wrong == []
    finally:
        http.attach(None)
        dev.server.server_close()
