"""Function URLs: an HTTP request to <url-id>.lambda-url.<region>.localhost becomes a call of its
function, as AWS's function URLs make one (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html).

The request is found by its host's first label (the URL id, control/registry.py), answered at once
if it is a CORS preflight, authorised (AWS_IAM: SigV4 and the identity's policy must allow
lambda:InvokeFunctionUrl; NONE: the function's resource-based policy must let anyone), turned into
the payload format 2.0 event, and run through the same call path as Invoke (invoke.py: the reserved
concurrency, the queue, usage records and logs). The function's result becomes the HTTP answer by
AWS's response rules: an object with `statusCode` is the response (headers, cookies, body,
isBase64Encoded); any other JSON is a 200 application/json body.
"""
from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from chalicelib.authenticate import Identity
from chalicelib.errors import AccessDenied, Mk1Error, ResourceNotFound, TooManyRequests
from chalicelib.model import Cors, FunctionUrl
from chalicelib.request import FunctionRef, HttpRequest, InvokeRequest, new_request_id

URL_HOST = re.compile(r"^([a-z0-9]{32})\.lambda-url\.([a-z0-9-]+)\.(?:localhost|on\.aws)(?::\d+)?$")
INVOKE_URL_ACTION = "lambda:InvokeFunctionUrl"
ANONYMOUS = "anonymous"   # the usage records' user of a call through an AuthType NONE URL
# Bodies Lambda passes as text; any other content type (none at all, form posts) arrives
# base64-encoded (isBase64Encoded), as HTTP API payload 2.0 does.
_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml", "+json", "+xml")
# AWS's 403 for a call no policy allows (recorded against AWS: LocalStack's lambda URL snapshots).
FORBIDDEN = ("Forbidden. For troubleshooting Function URL authorization issues, see: "
             "https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html")


@dataclass
class UrlAnswer:
    """A function URL's HTTP answer: made here, written by the front door (edge/handler.py)."""
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    request_id: str = ""


def is_url_host(host: str) -> bool:
    return ".lambda-url." in host


class FunctionUrls:
    def __init__(self, invoker):
        self.invoker = invoker
        self.p = invoker.p

    def mode(self, host: str) -> str:
        """BUFFERED or RESPONSE_STREAM: how the URL on `host` answers (BUFFERED when not known)."""
        m = URL_HOST.match(host.lower())
        try:
            return self.p.registry.url(m.group(1)).invoke_mode if m else "BUFFERED"
        except Mk1Error:
            return "BUFFERED"

    def serve(self, req: HttpRequest, host: str, stream=None) -> UrlAnswer:
        request_id = new_request_id()
        m = URL_HOST.match(host.lower())
        try:
            if m is None:
                raise ResourceNotFound(f"{host} is not a function URL")
            url = self.p.registry.url(m.group(1))
        except ResourceNotFound:   # AWS: an unknown URL id is 403 {"Message": null}
            return _message(403, None, request_id, "AccessDeniedException")
        origin = req.headers.get("origin")
        if req.method == "OPTIONS" and origin and "access-control-request-method" in req.headers and url.cors:
            return _preflight(url.cors, origin, req.headers, request_id)
        try:
            identity = self._authorize(req, url)
            answer = self._invoke(request_id, identity, url, req, host, stream)
        except TooManyRequests:
            answer = _message(429, "Rate Exceeded.", request_id, "TooManyRequestsException")
        except Mk1Error as e:
            if e.status == 403:   # unsigned, a bad signature, or no policy allows it
                answer = _message(403, FORBIDDEN, request_id, "AccessDeniedException")
            else:
                answer = _message(e.status if e.status < 500 else 502, e.message, request_id, e.code)
        if url.cors and origin:
            answer.headers += _cors_headers(url.cors, origin)
        return answer

    # -- who may call it --
    def _authorize(self, req: HttpRequest, url: FunctionUrl) -> Identity:
        registry = self.p.registry
        arn = registry.function_arn(url.function) + (f":{url.qualifier}" if url.qualifier else "")
        if url.auth_type == "AWS_IAM":
            identity = self.invoker.authenticate(req)    # SigV4, as for Invoke (service "lambda")
            self.invoker.authorize(identity, arn, INVOKE_URL_ACTION)
            return identity
        if not url.public:
            fresh = registry.url(url.url_id)   # the permission may have been added a moment ago
            if not fresh.public and registry.read_again():
                fresh = registry.url(url.url_id)
            if not fresh.public:
                raise AccessDenied(f"no resource-based policy lets anyone invoke {arn} by its URL")
        return Identity(ANONYMOUS, "")

    # -- the call --
    def _invoke(self, request_id: str, identity: Identity, url: FunctionUrl, req: HttpRequest,
                host: str, stream=None) -> UrlAnswer:
        p = self.p
        config = p.registry.resolve(url.function, url.qualifier)
        event = build_event(req, url, host, request_id, p.registry.account or "000000000000", identity)
        invoked = p.registry.function_arn(url.function) + (f":{url.qualifier}" if url.qualifier else "")
        call = InvokeRequest(FunctionRef(url.function, url.qualifier), url.qualifier, "RequestResponse", False,
                             json.dumps(event).encode(), stream=stream)
        if stream is not None:
            stream.put("start", {"version": config.version, "request_id": request_id})
        result = self.invoker.invoke_sync(request_id, identity, config, call, invoked, req.alive, req.later)
        if result.function_error:
            return _internal_error(request_id)
        return response_of(result.payload, request_id)


def cors_for(urls: FunctionUrls, host: str, origin: str | None) -> list[tuple[str, str]]:
    """The CORS headers of an answer streamed from the URL on `host` (a buffered one has them already)."""
    m = URL_HOST.match(host.lower())
    if not origin or m is None:
        return []
    try:
        url = urls.p.registry.url(m.group(1))
    except Mk1Error:
        return []
    return _cors_headers(url.cors, origin) if url.cors else []


def build_event(req: HttpRequest, url: FunctionUrl, host: str, request_id: str, account: str,
                identity: Identity) -> dict:
    """The payload format 2.0 event (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html)."""
    headers = {k: v for k, v in req.headers.items()}
    # What AWS's front end adds to every function URL request.
    headers.setdefault("x-forwarded-for", "127.0.0.1")
    headers.setdefault("x-forwarded-proto", "http")
    headers.setdefault("x-forwarded-port", host.rsplit(":", 1)[1] if ":" in host else "80")
    headers.setdefault("x-amzn-trace-id", f"Root=1-{int(time.time()):08x}-{request_id.replace('-', '')[:24]}")
    raw_query = "&".join(f"{k}={v}" for k, vs in req.query.items() for v in vs)
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    params: dict[str, str] = {}
    for k, v in parse_qsl(raw_query, keep_blank_values=True):
        params[k] = f"{params[k]},{v}" if k in params else v
    now = time.time()
    context = {
        "accountId": "anonymous" if identity.user == ANONYMOUS else account,
        "apiId": url.url_id,
        "domainName": host.split(":")[0],
        "domainPrefix": url.url_id,
        "http": {"method": req.method, "path": req.raw_path or "/", "protocol": "HTTP/1.1",
                 "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent", "")},
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if identity.user != ANONYMOUS:
        context["authorizer"] = {"iam": {"accessKey": identity.access_key_id, "accountId": account,
                                         "callerId": identity.access_key_id, "cognitoIdentity": None,
                                         "principalOrgId": None,
                                         "userArn": f"arn:aws:iam::{account}:user/{identity.user}",
                                         "userId": identity.access_key_id}}
    event: dict = {"version": "2.0", "routeKey": "$default", "rawPath": req.raw_path or "/",
                   "rawQueryString": raw_query, "headers": headers}
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    event["requestContext"] = context
    if req.body:
        text = _is_text(headers.get("content-type", ""))
        event["body"] = req.body.decode("utf-8") if text else base64.b64encode(req.body).decode()
        event["isBase64Encoded"] = not text
    else:
        event["isBase64Encoded"] = False
    return event


def _is_text(content_type: str) -> bool:
    ct = content_type.lower()
    return bool(ct) and any(t in ct for t in _TEXT_TYPES)


def response_of(payload: bytes, request_id: str) -> UrlAnswer:
    """The function's result as the HTTP answer, by AWS's rules for function URLs."""
    try:
        result = json.loads(payload) if payload.strip() else None
    except ValueError:
        return UrlAnswer(200, [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)],
                         payload, request_id)
    if isinstance(result, dict) and "statusCode" in result:
        headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        headers += [("Set-Cookie", str(c)) for c in result.get("cookies") or []]
        body = result.get("body")
        if body is None:
            data = b""
        elif not isinstance(body, str):
            data = json.dumps(body).encode()
        elif result.get("isBase64Encoded"):
            data = base64.b64decode(body)
        else:
            data = body.encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
        try:
            status = int(result["statusCode"])
        except (TypeError, ValueError):
            return _internal_error(request_id)
        return UrlAnswer(status, headers + [("x-amzn-RequestId", request_id)], data, request_id)
    # Any other JSON is the body as it is, except a bare string, which goes without its quotes
    # (recorded against AWS: "hello" -> hello).
    data = result.encode() if isinstance(result, str) else payload
    return UrlAnswer(200, [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)], data,
                     request_id)


def _message(status: int, message: str | None, request_id: str, error_type: str | None = None) -> UrlAnswer:
    body = json.dumps({"Message": message}).encode()
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    return UrlAnswer(status, headers, body, request_id)


def _internal_error(request_id: str) -> UrlAnswer:
    """A function error (or an answer that is no HTTP response): AWS's 502, in plain words."""
    return UrlAnswer(502, [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)],
                     b"Internal Server Error", request_id)


def _origin_allowed(cors: Cors, origin: str) -> str | None:
    if "*" in cors.allow_origins:
        return origin if cors.allow_credentials else "*"
    return origin if origin in cors.allow_origins else None


def _cors_headers(cors: Cors, origin: str) -> list[tuple[str, str]]:
    allowed = _origin_allowed(cors, origin)
    if allowed is None:
        return []
    out = [("Access-Control-Allow-Origin", allowed)]
    if cors.allow_credentials:
        out.append(("Access-Control-Allow-Credentials", "true"))
    if cors.expose_headers:
        out.append(("Access-Control-Expose-Headers", ",".join(cors.expose_headers)))
    if allowed != "*":
        out.append(("Vary", "Origin"))
    return out


def _preflight(cors: Cors, origin: str, headers: dict, request_id: str) -> UrlAnswer:
    """A CORS preflight, answered by Lambda without invoking the function."""
    out = [("x-amzn-RequestId", request_id)]
    method = headers.get("access-control-request-method", "").upper()
    allowed = _origin_allowed(cors, origin)
    methods = {m.upper() for m in cors.allow_methods}
    if allowed is not None and ("*" in methods or method in methods):
        out += _cors_headers(cors, origin)
        out.append(("Access-Control-Allow-Methods", ",".join(cors.allow_methods)))
        asked = headers.get("access-control-request-headers")
        if cors.allow_headers:
            out.append(("Access-Control-Allow-Headers",
                        asked if "*" in cors.allow_headers and asked else ",".join(cors.allow_headers)))
        if cors.max_age is not None:
            out.append(("Access-Control-Max-Age", str(cors.max_age)))
    return UrlAnswer(200, out, b"", request_id)
