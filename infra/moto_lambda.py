"""The embedded AWS's Lambda API, carried where moto stops short of what mk1 needs from it.

moto stores a function's code (GetFunction's `Code.Location` names an S3 URL on AWS's own host,
which nothing here can reach) and, for `--zip-file` uploads, keeps the zip only in its memory. So
the dispatcher could run only functions whose code infra/ had put in mk1's bucket. Here:

- `Code.Location` names this server: `http://HOST:PORT/_mk1/lambda-code/ACCOUNT/REGION/NAME/VERSION`,
  which answers that version's zip (moto's `code_bytes`, for zip and S3 uploads alike), as AWS's
  presigned URL answers its zip. Only on the loopback server this process is.
- a published version keeps the code it was published with: moto's `publish_version` makes a
  shallow copy, so a later `update-function-code` rewrote the version's `code` dict (S3Key) too.
- put/update of an event-invoke config replace/merge it (moto kept the first one forever), and a
  function's DeadLetterConfig is kept and answered (moto dropped it).
- SnapStart is kept from create and update and answered per version (moto always said Off).
- function URL configs: per function and qualifier, listed, and naming the dispatcher (below).
"""
from __future__ import annotations

import copy
import re
import sys
from urllib.parse import unquote

CODE_PATH = "/_mk1/lambda-code/"
STATE = None   # moto_state.StateJournal, when the control plane is kept (moto_server.main)
GATE = None    # the credentials file, when requests must be signed (aws_gate.py; moto_server.main)
_CODE_RE = re.compile(r"^/_mk1/lambda-code/(\d{12})/([a-z0-9-]+)/([^/]+)/([^/]+)$")
_BASE_URL = {"value": "http://127.0.0.1:4566"}


def set_base_url(url: str) -> None:
    _BASE_URL["value"] = url.rstrip("/")


def code_url(account: str, region: str, name: str, version: str) -> str:
    """A presigned link, as AWS's Location is: valid 10 minutes, the only way past the gate to code."""
    from infra.aws_gate import sign_code_link
    return _BASE_URL["value"] + sign_code_link(f"{CODE_PATH}{account}/{region}/{name}/{version}")


def _local_code_location() -> bool:
    from moto.awslambda.models import LambdaFunction

    original = LambdaFunction.get_code
    if getattr(original, "mk1", False):
        return True

    def get_code(self):
        resp = original(self)
        if "ZipFile" in self.code or "S3Key" in self.code:
            resp["Code"] = {"Location": code_url(self.account_id, self.region, self.function_name,
                                                 str(self.version)), "RepositoryType": "S3"}
        return resp
    get_code.mk1 = True
    LambdaFunction.get_code = get_code
    return True


def _versions_keep_their_code() -> bool:
    from moto.awslambda.models import LambdaStorage

    original = LambdaStorage.publish_version
    if getattr(original, "mk1", False):
        return True

    def publish_version(self, name_or_arn: str, description: str = ""):
        fn = original(self, name_or_arn, description)
        if fn is not None and not getattr(fn, "mk1_own_code", False):
            fn.code = copy.copy(fn.code)
            fn.mk1_own_code = True
        return fn
    publish_version.mk1 = True
    LambdaStorage.publish_version = publish_version
    return True


def code_of(account: str, region: str, name: str, version: str) -> bytes | None:
    from moto.awslambda.models import lambda_backends
    try:
        fn = lambda_backends[account][region].get_function(name, None if version == "$LATEST" else version)
    except Exception:
        return None
    return getattr(fn, "code_bytes", None) or None


def serve_code(app):
    """WSGI middleware: GET /_mk1/lambda-code/... answers the zip; everything else goes to moto."""
    def wsgi(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(CODE_PATH):
            return app(environ, start_response)
        m = _CODE_RE.match(unquote(path))
        data = code_of(*m.groups()) if m and environ.get("REQUEST_METHOD") == "GET" else None
        if data is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such function code"]
        start_response("200 OK", [("Content-Type", "application/zip"), ("Content-Length", str(len(data)))])
        return [data]
    return wsgi


def _wrap_server_app() -> bool:
    from moto import server as moto_server

    original = moto_server.DomainDispatcherApplication
    if getattr(original, "mk1", False):
        return True

    def make(*args, **kwargs):
        app = serve_code(serve_function_urls(original(*args, **kwargs)))
        if STATE is not None:   # the control plane kept across restarts (moto_state.py)
            sent, failed, took = STATE.replay(app)
            if sent:
                print(f"mk1: replayed {sent} control-plane changes in {took:.2f} s ({failed} refused)",
                      file=sys.stderr, flush=True)
            app = STATE.middleware(app)
        if GATE is not None:   # outermost: a refused request reaches neither moto nor the journal
            from moto.core import DEFAULT_ACCOUNT_ID
            from infra.aws_gate import Gate
            app = Gate(app, GATE, DEFAULT_ACCOUNT_ID)
        return app
    make.mk1 = True
    moto_server.DomainDispatcherApplication = make
    return True


def _event_invoke_config_replaced() -> bool:
    """moto appends every put/update of a function's event-invoke config and answers the first one,
    so a changed MaximumRetryAttempts or destination was never seen. As on AWS: put replaces the
    function's config, update changes the fields it names (per function; qualifiers are not kept
    apart here)."""
    from moto.awslambda.models import EventInvokeConfig, LambdaBackend

    if getattr(LambdaBackend.put_function_event_invoke_config, "mk1", False):
        return True

    def put(self, function_name, config):
        fn = self.get_function(function_name)
        event_config = EventInvokeConfig(fn.function_arn, fn.last_modified, config)
        fn.event_invoke_config = [event_config]
        return event_config.response()

    def update(self, function_name, config):
        fn = self.get_function(function_name)
        merged = {**(fn.event_invoke_config[0].config if fn.event_invoke_config else {}), **config}
        return put(self, function_name, merged)
    put.mk1 = update.mk1 = True
    LambdaBackend.put_function_event_invoke_config = put
    LambdaBackend.update_function_event_invoke_config = update
    return True


def _kept_in_configuration(field: str, created, updated, answered) -> bool:
    """A configuration field moto drops, kept on the function (as `mk1_<field>`) and answered in its
    configuration: `created(spec)` and `updated(function, updates, kept)` give the kept value (or
    raise AWS's error before moto changes anything), `answered(function, config, kept)` writes it
    into GetFunction / ListFunctions. One wrapper of moto's three methods per field."""
    from moto.awslambda.models import LambdaFunction

    attr = f"mk1_{field}"
    if getattr(LambdaFunction.get_configuration, attr, False):
        return True
    init, update, describe = LambdaFunction.__init__, LambdaFunction.update_configuration, \
        LambdaFunction.get_configuration

    def __init__(self, account_id, spec, region, version=1):
        value = created(spec)
        init(self, account_id, spec, region, version)
        setattr(self, attr, value)

    def update_configuration(self, config_updates):
        setattr(self, attr, updated(self, config_updates, getattr(self, attr, None)))
        return update(self, config_updates)

    def get_configuration(self, on_create=False):
        config = describe(self, on_create)
        answered(self, config, getattr(self, attr, None))
        return config
    setattr(get_configuration, attr, True)
    LambdaFunction.__init__, LambdaFunction.update_configuration = __init__, update_configuration
    LambdaFunction.get_configuration = get_configuration
    return True


def _dead_letter_config_kept() -> bool:
    """moto drops a function's DeadLetterConfig: kept here from create and update, and answered in the
    function's configuration (GetFunction, ListFunctions), as AWS does."""
    def answered(fn, config, kept):
        if kept:
            config["DeadLetterConfig"] = kept
    return _kept_in_configuration(
        "dead_letter", lambda spec: spec.get("DeadLetterConfig") or None,
        lambda fn, updates, kept: (updates["DeadLetterConfig"] or None) if "DeadLetterConfig" in updates else kept,
        answered)


def _mappings_do_not_invoke() -> bool:
    """moto runs an SQS event source mapping itself, on every SendMessage, by invoking the function in
    Docker (which cannot work here, and would race mk1's own poller). The mapping is kept as data
    (List/Get/Update/DeleteEventSourceMapping answer as before); mk1's dispatcher polls and invokes
    (chalicelib/triggers/)."""
    from moto.awslambda.models import LambdaBackend
    from moto.sqs.models import sqs_backends

    original = LambdaBackend.create_event_source_mapping
    if getattr(original, "mk1", False):
        return True

    def create_event_source_mapping(self, spec):
        esm = original(self, spec)
        parts = esm.event_source_arn.split(":")
        if parts[2] == "sqs":
            try:
                queue = sqs_backends[parts[4]][parts[3]].get_queue(parts[5])
                queue.lambda_event_source_mappings.pop(esm.function_arn, None)
            except Exception:
                pass
        return esm
    create_event_source_mapping.mk1 = True
    LambdaBackend.create_event_source_mapping = create_event_source_mapping
    return True


# Runtimes with SnapStart (https://docs.aws.amazon.com/lambda/latest/dg/snapstart.html): Java 11+,
# Python 3.12+, .NET 8+.
_SNAPSTART_RUNTIME = re.compile(r"^(java(1[1-9]|[2-9]\d)|python3\.(1[2-9]|[2-9]\d)|dotnet([89]|\d\d))")


def _snap_start_kept() -> bool:
    """moto answers every function with SnapStart {ApplyOn: None, OptimizationStatus: Off} and drops
    what create and update sent. Kept here, as AWS answers it: ApplyOn as set; OptimizationStatus On
    for a published version made with ApplyOn=PublishedVersions (its snapshot is what mk1's process
    backend restores), Off for $LATEST. A runtime without SnapStart is refused."""
    from moto.awslambda.exceptions import InvalidParameterValueException

    def apply_on(config: dict | None, runtime: str | None) -> str:
        value = (config or {}).get("ApplyOn") or "None"
        if value not in ("PublishedVersions", "None"):
            raise InvalidParameterValueException(
                f"1 validation error detected: Value '{value}' at 'snapStart.applyOn' failed to satisfy "
                "constraint: Member must satisfy enum value set: [PublishedVersions, None]")
        if value == "PublishedVersions" and not _SNAPSTART_RUNTIME.match(runtime or ""):
            raise InvalidParameterValueException(
                f"SnapStart is not supported for runtime {runtime}. SnapStart supports Java 11 and later, "
                "Python 3.12 and later, and .NET 8 and later.")
        return value

    def updated(fn, updates, kept):
        if "SnapStart" in updates:
            return apply_on(updates["SnapStart"], updates.get("Runtime") or fn.run_time)
        if updates.get("Runtime") and (kept or "None") != "None":
            apply_on({"ApplyOn": kept}, updates["Runtime"])   # a new runtime must support it too
        return kept

    def answered(fn, config, kept):
        applied = kept or "None"
        published = str(fn.version) != "$LATEST"
        config["SnapStart"] = {"ApplyOn": applied,
                               "OptimizationStatus": "On" if applied == "PublishedVersions" and published else "Off"}
    return _kept_in_configuration("snap_start", lambda spec: apply_on(spec.get("SnapStart"), spec.get("Runtime")),
                                  updated, answered)


def _copies_share_backends() -> bool:
    """ListFunctions(FunctionVersion=ALL) deep-copies every function's $LATEST (moto's
    LambdaStorage.all), and a moto LambdaFunction holds its region's CloudWatch Logs backend: each
    copy copied every log group, stream and event of the region. The dispatcher lists functions that
    way every second, so moto's CPU and memory grew with (functions x log events): 23 GB and the OOM
    killer at the end of one full test run, 7.4 M LogEvent objects in 9.5 k copies of the backend.
    A copy of a function now shares the service backends it points at, as the original does."""
    import copy as copy_module

    from moto.awslambda.models import LambdaFunction
    from moto.core.base_backend import BaseBackend

    if getattr(LambdaFunction.__dict__.get("__deepcopy__"), "mk1", False):
        return True
    if "__deepcopy__" in LambdaFunction.__dict__:
        return False   # moto has its own now

    def __deepcopy__(self, memo):
        new = LambdaFunction.__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__getstate__().items():
            new.__dict__[key] = value if isinstance(value, BaseBackend) else copy_module.deepcopy(value, memo)
        return new
    __deepcopy__.mk1 = True
    LambdaFunction.__deepcopy__ = __deepcopy__
    return True


PATCHES = {"lambda-copies-share-backends": _copies_share_backends, "lambda-snap-start": _snap_start_kept, "lambda-mappings-as-data": _mappings_do_not_invoke,
           "lambda-dead-letter-config": _dead_letter_config_kept, "lambda-code-location": _local_code_location,
           "lambda-version-code": _versions_keep_their_code,
           "lambda-code-route": _wrap_server_app, "lambda-event-invoke-config": _event_invoke_config_replaced}


# -- function URLs ---------------------------------------------------------------------------------
# moto keeps one URL config per function (no Qualifier, no ListFunctionUrlConfigs) and names an
# https://...on.aws URL nothing here reaches. mk1's dispatcher serves function URLs, so the configs
# are kept here, per function and qualifier, and each FunctionUrl names the dispatcher on a
# *.localhost host (resolved to loopback by curl and browsers, no DNS): AWS's form
# <url-id>.lambda-url.<region>.on.aws with on.aws replaced by localhost:<dispatcher port>.
# https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunctionUrlConfig.html
_URL_PATH = re.compile(r"^/2021-10-31/functions/([^/]+)/(url|urls)/?$")
_URL_QUALIFIER = re.compile(r"^(?!^[0-9]+$)[a-zA-Z0-9-_]+$")   # an alias: neither a version nor $LATEST
URL_CONFIGS: dict[tuple[str, str, str], dict[str, dict]] = {}   # (account, region, name) -> qualifier -> config
DEFAULT_ACCOUNT = "123456789012"


def function_url_base(url_id: str, region: str) -> str:
    import os
    port = os.environ.get("MK1_DISPATCHER_PORT")
    if not port:
        from my_mk1_homework import settings
        port = str(settings.load().MK1_DISPATCHER_PORT)
    return f"http://{url_id}.lambda-url.{region}.localhost:{port}/"


def _now() -> str:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _lambda_error(status: int, code: str, message: str, key: str = "Message", typed: bool = True):
    body = {"Type": "User", key: message} if typed else {key: message}
    return status, {"x-amzn-errortype": code}, body


def _url_answer(method: str, path: str, query: dict, headers: dict, body: bytes):
    """(status, headers, JSON-able body | None) of a function URL config request."""
    import hashlib
    import json
    from urllib.parse import unquote as unq
    from moto.awslambda.models import lambda_backends
    m = _URL_PATH.match(path)
    ref, kind = unq(m.group(1)), m.group(2)
    scope = re.search(r"Credential=[^/]+/\d+/([a-z0-9-]+)/", headers.get("authorization", ""))
    region = scope.group(1) if scope else "us-east-1"
    account = DEFAULT_ACCOUNT
    name = ref.split(":")[6] if ref.startswith("arn:") else ref.split(":")[0]
    backend = lambda_backends[account][region]
    try:
        fn = backend.get_function(name)
    except Exception:
        return _lambda_error(404, "ResourceNotFoundException",
                             f"Function not found: arn:aws:lambda:{region}:{account}:function:{name}")
    store = URL_CONFIGS.setdefault((account, region, name), {})
    if kind == "urls":
        if method != "GET":
            return _lambda_error(405, "MethodNotAllowedException", "Method not allowed", "message")
        return 200, {}, {"FunctionUrlConfigs": [_url_view(c, full=True) for c in store.values()]}
    qualifier = (query.get("Qualifier") or [None])[0]
    if qualifier is not None and not _URL_QUALIFIER.match(qualifier):
        return _lambda_error(400, "ValidationException",
                             f"1 validation error detected: Value '{qualifier}' at 'qualifier' failed to satisfy "
                             r"constraint: Member must satisfy regular expression pattern: "
                             r"((?!^\d+$)^[0-9a-zA-Z-_]+$)", "message", typed=False)
    if qualifier is not None:
        try:
            backend.get_alias(qualifier, name)
        except Exception:
            return _lambda_error(404, "ResourceNotFoundException",
                                 f"Function not found: {fn.function_arn}:{qualifier}")
    key = qualifier or ""
    arn = fn.function_arn + (f":{qualifier}" if qualifier else "")
    config = store.get(key)
    if method == "GET":
        if config is None:
            return _lambda_error(404, "ResourceNotFoundException", "The resource you requested does not exist.")
        return 200, {}, _url_view(config, full=True)
    if method == "DELETE":
        if store.pop(key, None) is None:
            return _lambda_error(404, "ResourceNotFoundException", "The resource you requested does not exist.")
        return 204, {}, None
    try:
        spec = json.loads(body or b"{}")
    except ValueError:
        return _lambda_error(400, "InvalidRequestContentException", "Could not parse request body into json",
                             "message")
    problem = _url_spec_problem(spec, creating=method == "POST")
    if problem:
        return _lambda_error(400, "ValidationException", problem, "message", typed=False)
    if method == "POST":
        if config is not None:
            return _lambda_error(409, "ResourceConflictException",
                                 f"Failed to create function url config for [functionArn = {arn}]. "
                                 "Error message:  FunctionUrlConfig exists for this Lambda function")
        now = _now()
        # Derived from the function (as AWS derives it from the account): the same after a replay.
        url_id = hashlib.sha256(f"{account}:{region}:{name}:{qualifier or ''}".encode()).hexdigest()[:32]
        config = store[key] = {"FunctionUrl": function_url_base(url_id, region), "FunctionArn": arn,
                               "AuthType": spec["AuthType"], "CreationTime": now, "LastModifiedTime": now,
                               "UrlId": url_id, "Qualifier": qualifier}
        if spec.get("InvokeMode"):   # AWS answers InvokeMode only once it was set
            config["InvokeMode"] = spec["InvokeMode"]
        if spec.get("Cors") is not None:
            config["Cors"] = spec["Cors"]
        return 201, {}, _url_view(config, full=False)
    if method == "PUT":
        if config is None:
            return _lambda_error(404, "ResourceNotFoundException", "The resource you requested does not exist.")
        for field in ("AuthType", "Cors", "InvokeMode"):
            if field in spec:
                config[field] = spec[field]
        config["LastModifiedTime"] = _now()
        return 200, {}, _url_view(config, full=True)
    return _lambda_error(405, "MethodNotAllowedException", "Method not allowed", "message")


def _url_spec_problem(spec: dict, creating: bool) -> str | None:
    auth = spec.get("AuthType")
    if creating and auth is None:
        return "1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null"
    if auth is not None and auth not in ("NONE", "AWS_IAM"):
        return (f"1 validation error detected: Value '{auth}' at 'authType' failed to satisfy constraint: "
                "Member must satisfy enum value set: [NONE, AWS_IAM]")
    mode = spec.get("InvokeMode")
    if mode is not None and mode not in ("BUFFERED", "RESPONSE_STREAM"):
        return (f"1 validation error detected: Value '{mode}' at 'invokeMode' failed to satisfy constraint: "
                "Member must satisfy enum value set: [RESPONSE_STREAM, BUFFERED]")
    return None


def _url_view(config: dict, full: bool) -> dict:
    """The API's view of a stored config (UrlId and Qualifier are mk1's, not AWS's)."""
    keep = ("FunctionUrl", "FunctionArn", "AuthType", "Cors", "CreationTime", "InvokeMode") + \
        (("LastModifiedTime",) if full else ())
    return {k: config[k] for k in keep if k in config}


def url_configs_of(account: str, region: str, name: str) -> dict[str, dict]:
    return URL_CONFIGS.get((account, region, name), {})


def serve_function_urls(app):
    """WSGI middleware: the function URL config API (above); everything else goes to moto."""
    import json

    def wsgi(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not _URL_PATH.match(path):
            return app(environ, start_response)
        from urllib.parse import parse_qs
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        status, extra, payload = _url_answer(environ.get("REQUEST_METHOD", "GET"), path,
                                             parse_qs(environ.get("QUERY_STRING", "")), headers, body)
        data = b"" if payload is None else json.dumps(payload).encode()
        reason = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
                  405: "Method Not Allowed", 409: "Conflict"}.get(status, "Error")
        start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(data))), *extra.items()])
        return [data]
    return wsgi


def _urls_go_with_their_function() -> bool:
    from moto.awslambda.models import LambdaBackend
    original = LambdaBackend.delete_function
    if getattr(original, "mk1_urls", False):
        return True

    def delete_function(self, function_name, qualifier=None):
        result = original(self, function_name, qualifier)
        name = function_name.split(":")[6] if function_name.startswith("arn:") else function_name
        if qualifier is None:
            URL_CONFIGS.pop((self.account_id, self.region_name, name), None)
        return result
    delete_function.mk1_urls = True
    LambdaBackend.delete_function = delete_function
    return True


PATCHES["lambda-function-urls"] = _urls_go_with_their_function


# -- LoggingConfig ---------------------------------------------------------------------------------
# moto drops a function's LoggingConfig. Kept here from create and update and answered as AWS answers
# it (recorded against AWS: Text and the function's /aws/lambda group by default; JSON with INFO
# levels unless set; levels refused with Text; switching to Text drops them):
# https://docs.aws.amazon.com/lambda/latest/api/API_LoggingConfig.html
_LEVELS = {"ApplicationLogLevel": ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"),
           "SystemLogLevel": ("DEBUG", "INFO", "WARN")}
_LOG_GROUP = re.compile(r"^[\.\-_/#A-Za-z0-9]{1,512}$")


def _logging_config(requested: dict | None, before: dict | None, name: str) -> dict:
    from moto.awslambda.exceptions import InvalidParameterValueException
    from moto.awslambda.exceptions import ValidationException as MotoValidation
    out = dict(before or {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"})
    req = requested or {}
    fmt = req.get("LogFormat", out.get("LogFormat", "Text"))
    if fmt not in ("JSON", "Text"):
        raise MotoValidation(fmt, "loggingConfig.logFormat", "Member must satisfy enum value set: [Text, JSON]")
    for key, allowed in _LEVELS.items():
        if key in req and req[key] not in allowed:
            field = "applicationLogLevel" if key.startswith("App") else "systemLogLevel"
            raise MotoValidation(req[key], f"loggingConfig.{field}",
                                 f"Member must satisfy enum value set: [{', '.join(allowed)}]")
    if fmt == "Text" and any(k in req for k in _LEVELS):
        raise InvalidParameterValueException(
            'LogLevel is not supported when LogFormat is set to "Text". Remove LogLevel from your request or '
            'change the LogFormat to "JSON" and try again.')
    if "LogGroup" in req:
        if not _LOG_GROUP.match(str(req["LogGroup"])):
            raise MotoValidation(req["LogGroup"], "loggingConfig.logGroup",
                                 r"Member must satisfy regular expression pattern: [\.\-_/#A-Za-z0-9]+")
        out["LogGroup"] = req["LogGroup"]
    out["LogFormat"] = fmt
    if fmt == "JSON":
        for key in _LEVELS:
            out[key] = req.get(key) or out.get(key) or "INFO"
    else:
        for key in _LEVELS:
            out.pop(key, None)
    return out


def _logging_config_kept() -> bool:
    def answered(fn, config, kept):
        config["LoggingConfig"] = dict(kept or _logging_config(None, None, fn.function_name))
    return _kept_in_configuration(
        "logging", lambda spec: _logging_config(spec.get("LoggingConfig"), None, spec.get("FunctionName", "")),
        lambda fn, updates, kept: _logging_config(updates["LoggingConfig"], kept, fn.function_name)
        if "LoggingConfig" in updates else kept, answered)


PATCHES["lambda-logging-config"] = _logging_config_kept
