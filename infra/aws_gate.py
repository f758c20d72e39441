"""The embedded AWS's door: a request is answered only if a known identity signed it (SigV4) and
IAM allows what it asks for.

moto accepts any key and enforces nothing (nor does LocalStack's community edition): any local
process could read the users' secret keys from Secrets Manager, grant itself a function, rewrite
usage records or replace function code. This WSGI layer, in front of everything moto serves:

- **who**: the `Authorization` header's key id must be the operator's (profile `operator` in
  MK1_HOME/credentials, infra/operator_key.py) or an active IAM access key of an IAM user in moto's
  own IAM (read in this process: a key made a moment ago works at once, a deleted one stops); the
  signature is checked as the dispatcher checks its callers' (chalicelib/authenticate.py: the same
  canonical request, the same 15-minute window);
- **what**: the operator may do everything. An IAM user may do what its policies (inline,
  attached, its groups') allow, evaluated by chalicelib/authorize.py on the action (`lambda:
  GetFunction`, `dynamodb:Query`, … found from the request as botocore's service model names it)
  and the resource (the function, table, queue or bucket the request names; `*` otherwise);
- **what is open**: `GET /moto-api/` alone (a liveness probe: the dashboard page, not its data),
  and a function's code by the presigned link GetFunction answers (`Code.Location`, valid 10
  minutes, as AWS's). A presigned URL (SigV4 in the query string, or S3's older form) is checked as
  its signer's request: the same key lookup, then IAM.

Refusals are AWS's common errors (IAM API Reference, "Common Error Types"), each in the form of
the protocol it came in, so boto3, the aws CLI and awslocal raise them as they would on AWS:
MissingAuthenticationToken, IncompleteSignature, InvalidClientTokenId (UnrecognizedClientException
for JSON and REST-JSON services), SignatureDoesNotMatch (InvalidSignatureException), AccessDenied.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import re
import secrets
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, unquote

from chalicelib import authenticate, authorize
from chalicelib.errors import IncompleteSignature, InvalidSignature, MissingAuthenticationToken, UnrecognizedClient

from infra import operator_key
from infra.moto_lambda import CODE_PATH

log = logging.getLogger("mk1.gate")

CODE_LINK_TTL_S = 600   # AWS: GetFunction's Code.Location "is valid for 10 minutes"
_TOKEN_KEY = secrets.token_bytes(32)   # this process's: links die with it, as moto's code does
STREAMING = ("STREAMING-",)            # aws-chunked uploads: moto decodes the chunks, we check the head

# The IAM action of an API operation, where the two names differ.
_IAM_ACTION = {("lambda", "Invoke"): "InvokeFunction", ("lambda", "InvokeWithResponseStream"): "InvokeFunction",
               ("s3", "ListObjects"): "ListBucket", ("s3", "ListObjectsV2"): "ListBucket",
               ("s3", "HeadBucket"): "ListBucket", ("s3", "HeadObject"): "GetObject",
               ("s3", "ListBuckets"): "ListAllMyBuckets", ("s3", "ListObjectVersions"): "ListBucketVersions"}
_IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}


def sign_code_link(path: str, now: float | None = None) -> str:
    """`path` with an expiry and an HMAC over both: the presigned form of a code download link."""
    expires = int((now or time.time()) + CODE_LINK_TTL_S)
    mac = hmac.new(_TOKEN_KEY, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{path}?X-Mk1-Expires={expires}&X-Mk1-Signature={mac}"


def code_link_valid(path: str, query: dict[str, list[str]], now: float | None = None) -> bool:
    try:
        expires = int(query["X-Mk1-Expires"][0])
        given = query["X-Mk1-Signature"][0]
    except (KeyError, ValueError, IndexError):
        return False
    mac = hmac.new(_TOKEN_KEY, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, given) and (now or time.time()) <= expires


class Identities:
    """Access key id -> {"user", "secret"} for authenticate.verify: the operator, or moto's IAM users."""

    def __init__(self, credentials: Path, account: str):
        self.credentials, self.account = credentials, account
        self.operator = operator_key.ensure(credentials)

    def lookup(self, akid: str) -> dict | None:
        if akid == self.operator[0]:
            return {"user": operator_key.PROFILE, "secret": self.operator[1]}
        user = self._user_of(akid)
        return None if user is None else {"user": user[0], "secret": user[1]}

    def _user_of(self, akid: str):
        from moto.iam.models import iam_backends
        try:
            backend = iam_backends[self.account]["global"]
        except KeyError:
            return None
        for user in list(backend.users.values()):
            for key in list(user.access_keys):
                if key.access_key_id == akid and key.status == "Active":
                    return user.name, key.secret_access_key
        return None

    def policies(self, user_name: str) -> list[dict]:
        """Every policy document that applies to the IAM user: inline, attached, its groups'."""
        from moto.iam.models import iam_backends
        backend = iam_backends[self.account]["global"]
        user = backend.users.get(user_name)
        if user is None:
            return []
        owners = [user, *backend.get_groups_for_user(user_name)]
        docs = []
        for owner in owners:
            docs += [_doc(raw) for raw in list(owner.policies.values())]
            for managed in list(owner.managed_policies.values()):
                docs += [_doc(v.document) for v in managed.versions if v.is_default]
        return docs


def _doc(raw) -> dict:
    try:
        return raw if isinstance(raw, dict) else json.loads(unquote(raw) if raw.lstrip().startswith("%") else raw)
    except (ValueError, AttributeError):
        return {}


class Operations:
    """(service, method, path, query, headers, body) -> API operation name, from botocore's models."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rest: dict[str, list] = {}
        self._models: dict[str, object] = {}

    def model(self, signing_name: str):
        with self._lock:
            if signing_name not in self._models:
                import botocore.session
                session = botocore.session.get_session()
                found = None
                for name in (signing_name, *session.get_available_services()):
                    try:
                        m = session.get_service_model(name)
                    except Exception:
                        continue
                    if m.signing_name == signing_name or m.endpoint_prefix == signing_name:
                        found = m
                        break
                self._models[signing_name] = found
            return self._models[signing_name]

    def operation(self, service: str, method: str, path: str, query: dict, headers: dict, body: bytes):
        """(operation name, its input as far as the request's path, query and JSON body give it)."""
        target = headers.get("x-amz-target")
        if target:
            return target.rpartition(".")[2], _json(body)
        action = (query.get("Action") or [None])[0]
        if action is None and body and "x-www-form-urlencoded" in headers.get("content-type", ""):
            form = parse_qs(body.decode("utf-8", "replace"))
            action = (form.get("Action") or [None])[0]
            if action:
                return action, {k: v[0] for k, v in form.items()}
        if action:
            return action, {k: v[0] for k, v in query.items()}
        return self._rest_operation(service, method, path, query)

    def _rest_operation(self, service: str, method: str, path: str, query: dict):
        routes = self._routes(service)
        best = None
        for op, http_method, regex, needs, literal, uri_params, query_params in routes:
            if http_method != method:
                continue
            m = regex.match(path)
            if m is None or any(k not in query for k in needs):
                continue
            if best is None or (len(needs), literal) > (len(best[1]), best[2]):
                params = {uri_params[g]: unquote(v) for g, v in m.groupdict().items() if v is not None}
                for name, location_name in query_params.items():
                    if location_name in query:
                        params[name] = query[location_name][0]
                best = (op, needs, literal, params)
        return (best[0], best[3]) if best else ("", {})

    def _routes(self, service: str) -> list:
        with self._lock:
            cached = self._rest.get(service)
        if cached is not None:
            return cached
        model = self.model(service)
        routes = []
        for op_name in (model.operation_names if model else []):
            op = model.operation_model(op_name)
            uri = op.http.get("requestUri", "/")
            path_part, _, query_part = uri.partition("?")
            needs = [q.partition("=")[0] for q in query_part.split("&") if q]
            regex, literal, groups = _uri_regex(path_part)
            members = op.input_shape.members if op.input_shape else {}
            uri_params = {f"p{i}": name for i, name in enumerate(groups)}
            uri_params = {g: next((m for m, s in members.items() if s.serialization.get("name") == n and
                                   s.serialization.get("location") == "uri"), n) for g, n in uri_params.items()}
            query_params = {m: s.serialization.get("name", m) for m, s in members.items()
                            if s.serialization.get("location") == "querystring"}
            routes.append((op_name, op.http.get("method", "POST"), regex, needs, literal, uri_params, query_params))
        with self._lock:
            self._rest[service] = routes
        return routes


def _uri_regex(template: str):
    """'/2015-03-31/functions/{FunctionName}/invocations' -> (regex, literal length, [FunctionName])."""
    out, groups, literal, pos = ["^"], [], 0, 0
    for m in re.finditer(r"\{([^}]+)\}", template):
        text = template[pos:m.start()]
        out.append(re.escape(text))
        literal += len(text)
        name = m.group(1)
        greedy = name.endswith("+")
        groups.append(name.rstrip("+"))
        out.append(f"(?P<p{len(groups) - 1}>{'.+' if greedy else '[^/]+'})")
        pos = m.end()
    text = template[pos:]
    out.append(re.escape(text))
    literal += len(text)
    out.append("/?$" if not template.endswith("/") else "$")
    return re.compile("".join(out)), literal, groups


def _json(body: bytes) -> dict:
    try:
        value = json.loads(body) if body else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def iam_action(service: str, op: str) -> str:
    return f"{_IAM_PREFIX.get(service, service)}:{_IAM_ACTION.get((service, op), op)}"


def resource_of(service: str, params: dict, region: str, account: str) -> str:
    """The ARN of what the request acts on, where its parameters name it; `*` otherwise."""
    if service == "lambda" and params.get("FunctionName"):
        name = params["FunctionName"]
        if not name.startswith("arn:"):
            name = f"arn:aws:lambda:{region}:{account}:function:{name}"
        qualifier = params.get("Qualifier")
        return f"{name}:{qualifier}" if qualifier and name.count(":") == 6 else name
    if service == "dynamodb" and params.get("TableName"):
        arn = f"arn:aws:dynamodb:{region}:{account}:table/{params['TableName']}"
        return f"{arn}/index/{params['IndexName']}" if params.get("IndexName") else arn
    if service == "sqs" and (params.get("QueueUrl") or params.get("QueueName")):
        name = (params.get("QueueUrl") or params["QueueName"]).rstrip("/").rpartition("/")[2]
        return f"arn:aws:sqs:{region}:{account}:{name}"
    if service == "s3" and params.get("Bucket"):
        return f"arn:aws:s3:::{params['Bucket']}" + (f"/{params['Key']}" if params.get("Key") else "")
    return "*"


class Refusal(Exception):
    def __init__(self, code: str, message: str, status: int = 403, json_code: str | None = None):
        super().__init__(message)
        self.code, self.message, self.status, self.json_code = code, message, status, json_code or code


_REFUSALS = {
    MissingAuthenticationToken: ("MissingAuthenticationToken", 403, "MissingAuthenticationTokenException"),
    IncompleteSignature: ("IncompleteSignature", 400, "IncompleteSignatureException"),
    UnrecognizedClient: ("InvalidClientTokenId", 403, "UnrecognizedClientException"),
    InvalidSignature: ("SignatureDoesNotMatch", 403, "InvalidSignatureException"),
}


def _answer(start_response, refusal: Refusal, form: str, service: str):
    """The refusal in the protocol the request came in: JSON, REST-JSON, query XML or S3's XML."""
    rid = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", rid)]
    if form == "json":
        body = json.dumps({"__type": refusal.json_code, "message": refusal.message}).encode()
        headers += [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-ErrorType", refusal.json_code)]
        if service == "sqs":   # JSON on the wire, the query protocol's codes (awsQueryCompatible)
            headers.append(("x-amzn-query-error", f"{refusal.code};Sender"))
    elif form == "rest-json":
        body = json.dumps({"Type": "User", "message": refusal.message}).encode()
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", refusal.json_code)]
    elif service == "s3":
        code, message = _S3_WORDS.get(refusal.code, (refusal.code, refusal.message))
        message = message or refusal.message
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{_xml(message)}</Message><RequestId>{rid}</RequestId></Error>").encode()
        headers += [("Content-Type", "application/xml")]
    else:
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{refusal.code}</Code>"
                f"<Message>{_xml(refusal.message)}</Message></Error><RequestId>{rid}</RequestId>"
                "</ErrorResponse>").encode()
        headers += [("Content-Type", "text/xml")]
    headers.append(("Content-Length", str(len(body))))
    reason = {400: "Bad Request", 403: "Forbidden"}.get(refusal.status, "Error")
    start_response(f"{refusal.status} {reason}", headers)
    return [body]


# S3's own codes and words for the same refusals (Amazon S3 API Reference, "Error responses").
_S3_WORDS = {"InvalidClientTokenId": ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist "
                                      "in our records."),
             "MissingAuthenticationToken": ("AccessDenied", "Access Denied"),
             "AccessDenied": ("AccessDenied", None),   # the refusal's own words (IAM's, or an expiry)
             "SignatureDoesNotMatch": ("SignatureDoesNotMatch", "The request signature we calculated does not match "
                                       "the signature you provided. Check your key and signing method.")}


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _form(headers: dict, query: dict, service: str) -> str:
    if headers.get("x-amz-target"):
        return "json"
    if service == "s3":
        return "s3"
    if "Action" in query or "x-www-form-urlencoded" in headers.get("content-type", ""):
        return "query"
    return "rest-json"


class Gate:
    """WSGI middleware in front of moto (see the module's docstring)."""

    def __init__(self, app, credentials: Path, account: str):
        self.app, self.account = app, account
        self.identities = Identities(credentials, account)
        self.operations = Operations()

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if method in ("GET", "HEAD") and path == "/moto-api/":
            return self.app(environ, start_response)
        if path.startswith(CODE_PATH):
            if code_link_valid(path, query):
                return self.app(environ, start_response)
            return _answer(start_response, Refusal("AccessDenied", "Request has expired or its signature "
                                                   "does not match"), "s3", "s3")
        headers = _headers(environ)
        body = _body(environ)
        region, service = _scope(headers, query)
        form = _form(headers, query, service)
        try:
            who = self._authenticate(environ, method, query, headers, body, service)
            if who != operator_key.PROFILE:
                self._authorize(who, service, region, method, path, query, headers, body)
        except Refusal as r:
            return _answer(start_response, r, form, service)
        return self.app(environ, start_response)

    def _authenticate(self, environ, method, query, headers, body, service) -> str:
        raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        raw_path = raw_path.split("?", 1)[0] or "/"
        if "://" in raw_path:   # an absolute request-target
            raw_path = "/" + raw_path.split("://", 1)[1].partition("/")[2]
        try:
            if not headers.get("authorization") and "X-Amz-Signature" in query:
                return verify_presigned(method, raw_path, query, headers, self.identities, service)
            if not headers.get("authorization") and "Signature" in query and "AWSAccessKeyId" in query:
                return verify_presigned_v2(method, raw_path, query, headers, self.identities)
            identity = authenticate.verify(method, raw_path, query, headers, body, self.identities,
                                           canonical_path=raw_path if service == "s3" else None,
                                           streaming_payloads=True)
        except tuple(_REFUSALS) as e:
            code, status, json_code = _REFUSALS[type(e)]
            message = {"InvalidClientTokenId": "The security token included in the request is invalid.",
                       "MissingAuthenticationToken": "Request is missing Authentication Token"}.get(code, str(e))
            raise Refusal(code, message, status, json_code) from None
        return identity.user

    def _authorize(self, user, service, region, method, path, query, headers, body) -> None:
        op, params = self.operations.operation(service, method, path, query, headers, body)
        action = iam_action(service, op or "Unknown")
        resource = resource_of(service, params, region, self.account)
        decision = authorize.evaluate(self.identities.policies(user), action, resource)
        if decision is not authorize.Decision.ALLOW:
            why = "an explicit deny in an identity-based policy" if decision is authorize.Decision.DENY \
                else f"no identity-based policy allows the {action} action"
            log.info("refused %s: %s on %s", user, action, resource)
            raise Refusal("AccessDenied", f"User: arn:aws:iam::{self.account}:user/{user} is not authorized to "
                          f"perform: {action} on resource: {resource} because {why}", 403, "AccessDeniedException")


def _headers(environ) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = environ["CONTENT_LENGTH"]
    return headers


def _body(environ) -> bytes:
    """The body, read whole and put back for moto (the keep-alive patch has read it into memory
    already; werkzeug's own path gives a stream)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    data = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(data)
    return data


_SCOPE = re.compile(r"Credential=[^/]*/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")


def _scope(headers: dict, query: dict) -> tuple[str, str]:
    """(region, service) of the request's credential scope: its Authorization header's, or a presigned
    URL's X-Amz-Credential."""
    text = headers.get("authorization", "") or "Credential=" + (query.get("X-Amz-Credential") or [""])[0]
    m = _SCOPE.search(text)
    if m is None and "AWSAccessKeyId" in query and "Signature" in query:
        return "us-east-1", "s3"   # S3's older presigned form names no scope; only S3 takes it
    return (m.group(1), m.group(2)) if m else ("us-east-1", "")


# -- presigned URLs (SigV4 in the query string) ---------------------------------------------------
# https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html: the signature covers
# the query without X-Amz-Signature; the payload is UNSIGNED-PAYLOAD; valid X-Amz-Expires seconds
# (at most 7 days) from X-Amz-Date.
MAX_PRESIGNED_S = 7 * 86_400
_CREDENTIAL = re.compile(r"^(?P<akid>[A-Za-z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)"
                         r"/aws4_request$")


def verify_presigned(method: str, raw_path: str, query: dict[str, list[str]], headers: dict[str, str],
                     keys, service: str, now: float | None = None) -> str:
    """Who presigned this URL (the key's user), or an error of the tree."""
    def one(name: str) -> str:
        return (query.get(name) or [""])[0]
    if one("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        raise IncompleteSignature("X-Amz-Algorithm must be AWS4-HMAC-SHA256.")
    m = _CREDENTIAL.match(one("X-Amz-Credential"))
    if m is None or not one("X-Amz-Signature") or not one("X-Amz-SignedHeaders"):
        raise IncompleteSignature("A presigned URL needs X-Amz-Credential, X-Amz-SignedHeaders and X-Amz-Signature.")
    entry = keys.lookup(m["akid"])
    if entry is None:
        raise UnrecognizedClient("The security token included in the request is invalid.")
    amz_date = one("X-Amz-Date")
    signed_at = authenticate._amz_date(amz_date)
    try:
        expires = int(one("X-Amz-Expires"))
    except ValueError:
        raise IncompleteSignature("X-Amz-Expires must be a number of seconds.") from None
    now = time.time() if now is None else now
    if not 0 < expires <= MAX_PRESIGNED_S or now > signed_at + expires or signed_at > now + authenticate.MAX_SKEW_S:
        raise Refusal("AccessDenied", "Request has expired")   # S3's words for a stale presigned URL
    signed = one("X-Amz-SignedHeaders").split(";")
    if "host" not in signed or any(h not in headers for h in signed):
        raise InvalidSignature("The host header, and every header the URL names, must be sent as signed.")
    canonical = "\n".join((
        method.upper(), raw_path if service == "s3" else authenticate._canonical_path(raw_path),
        authenticate.canonical_query({k: v for k, v in query.items() if k != "X-Amz-Signature"}),
        "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed), ";".join(signed),
        authenticate.UNSIGNED_PAYLOAD if service == "s3" else hashlib.sha256(b"").hexdigest()))
    to_sign = "\n".join(("AWS4-HMAC-SHA256", amz_date, f"{m['date']}/{m['region']}/{m['service']}/aws4_request",
                          hashlib.sha256(canonical.encode()).hexdigest()))
    key = authenticate._signing_key(entry["secret"], m["date"], m["region"], m["service"])
    if not hmac.compare_digest(hmac.digest(key, to_sign.encode(), "sha256").hex(), one("X-Amz-Signature")):
        raise InvalidSignature("The request signature we calculated does not match the signature you provided.")
    return entry["user"]


# S3's older query-string form, which boto3's generate_presigned_url still makes for S3 on a custom
# endpoint: https://docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html (HMAC-SHA1 of
# verb, Content-MD5, Content-Type, Expires and the resource with its sub-resources).
_SUBRESOURCES = ("acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber",
                 "policy", "requestPayment", "response-cache-control", "response-content-disposition",
                 "response-content-encoding", "response-content-language", "response-content-type",
                 "response-expires", "restore", "tagging", "torrent", "uploadId", "uploads", "versionId",
                 "versioning", "versions", "website")


def verify_presigned_v2(method: str, raw_path: str, query: dict[str, list[str]], headers: dict[str, str],
                        keys, now: float | None = None) -> str:
    def one(name: str) -> str:
        return (query.get(name) or [""])[0]
    entry = keys.lookup(one("AWSAccessKeyId"))
    if entry is None:
        raise UnrecognizedClient("The security token included in the request is invalid.")
    try:
        expires = int(one("Expires"))
    except ValueError:
        raise IncompleteSignature("Expires must be a number of seconds since the epoch.") from None
    if (time.time() if now is None else now) > expires:
        raise Refusal("AccessDenied", "Request has expired")
    sub = sorted((k, v[0]) for k, v in query.items() if k in _SUBRESOURCES)
    resource = raw_path + ("?" + "&".join(f"{k}={v}" if v else k for k, v in sub) if sub else "")
    amz = "".join(f"{k}:{v.strip()}\n" for k, v in sorted(headers.items()) if k.startswith("x-amz-"))
    to_sign = "\n".join((method.upper(), headers.get("content-md5", ""), headers.get("content-type", ""),
                         str(expires), amz + resource))
    expected = base64.b64encode(hmac.digest(entry["secret"].encode(), to_sign.encode(), "sha1")).decode()
    if not hmac.compare_digest(expected, one("Signature")):
        raise InvalidSignature("The request signature we calculated does not match the signature you provided.")
    return entry["user"]
