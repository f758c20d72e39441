"""The client classes: a thin, typed layer over a boto3 `lambda` client.

    >>> from my_mk1_homework import Alpha
    >>> alpha = Alpha(user="user1")
    >>> alpha.generate("hello world")
    '[alpha] world hello'
    >>> alpha.map(["a b", "c d"])          # parallel, answers in input order
    ['[alpha] b a', '[alpha] d c']
    >>> call = alpha.spawn("later")        # async (Event) invocation
    >>> call.result(timeout=30)
    '[alpha] later'
"""
from __future__ import annotations

import base64
import configparser
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable

import boto3
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

from . import run_header
from . import settings as settings_mod
from .errors import (AuthenticationFailed, BadRequest, ConnectionError, FunctionError, InvocationTimeout,
                     Mk1Error, NotFound, PermissionDenied, Throttled)
from .signed import signed_get

_ERRORS = {
    "AccessDeniedException": PermissionDenied,
    "UnrecognizedClientException": AuthenticationFailed,
    "InvalidSignatureException": AuthenticationFailed,
    "IncompleteSignatureException": AuthenticationFailed,
    "MissingAuthenticationTokenException": AuthenticationFailed,
    "ResourceNotFoundException": NotFound,
    "TooManyRequestsException": Throttled,
}

HINT = "Is mk1 running? Start it with `make up` (or set MK1_ENDPOINT)."


@dataclass
class InvokeResult:
    """The raw answer of one invocation, with mk1's metadata."""
    payload: Any
    request_id: str
    status_code: int
    function_error: str | None = None
    duration_ms: float | None = None
    wait_ms: float | None = None
    init_ms: float | None = None
    cold: bool | None = None
    container: str | None = None
    started_at: float | None = None    # epoch seconds: when it began executing (init included)
    log: str | None = None
    headers: dict = field(default_factory=dict, repr=False)


def load_profile(user: str, path=None) -> tuple[str, str]:
    s = settings_mod.load()
    path = path or s.credentials_file
    cfg = configparser.ConfigParser()
    if not cfg.read(path):
        raise ConnectionError(f"no credentials file at {path}. {HINT}")
    if user not in cfg:
        raise AuthenticationFailed(f"unknown user {user!r}: {path} has profiles {', '.join(cfg.sections())}")
    return cfg[user]["aws_access_key_id"], cfg[user]["aws_secret_access_key"]


class Function:
    """Any function in mk1, called as `user`. Alpha and Beta are this with a fixed name.

    >>> Function("RuntimeAlpha", user="admin").generate("hi")
    """

    def __init__(self, name: str, user: str = "admin", *, access_key_id: str | None = None,
                 secret_access_key: str | None = None, endpoint: str | None = None, region: str | None = None,
                 retry_throttled: bool = False, max_retries: int = 5, read_timeout: float = 900):
        s = settings_mod.load()
        self.name, self.user = name, user
        self.endpoint = endpoint or s.dispatcher_url
        self.region = region or s.region
        if access_key_id is None or secret_access_key is None:
            access_key_id, secret_access_key = load_profile(user)
        self._creds = Credentials(access_key_id, secret_access_key)
        self.retry_throttled, self.max_retries = retry_throttled, max_retries
        config = Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout, connect_timeout=5,
                        max_pool_connections=64, tcp_keepalive=True)
        self._client = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
            region_name=self.region).client("lambda", endpoint_url=self.endpoint, config=config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, user={self.user!r}, endpoint={self.endpoint!r})"

    # -- the verbs --
    def invoke(self, payload: dict | bytes | str, *, invocation_type: str = "RequestResponse",
               tail: bool = False) -> InvokeResult:
        """One raw invocation. Function errors come back in `function_error`, not raised."""
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        attempt = 0
        while True:
            try:
                return self._result(self._call(invocation_type, tail, body))
            except Throttled as t:
                attempt += 1
                if not self.retry_throttled or attempt > self.max_retries:
                    raise
                time.sleep(min(t.retry_after * (2 ** (attempt - 1)), 30) * (0.5 + 0.5 * (attempt % 2)))

    def generate(self, prompt: str) -> str:
        """Run the function on `prompt` and return its response text."""
        return self._text(self.invoke({"prompt": prompt}))

    def map(self, prompts: Iterable[str], max_parallel: int | None = None,
            return_exceptions: bool = True) -> list:
        """Run many prompts in parallel; answers come back in input order.

        With return_exceptions=True (the default) a failed item is its exception in the
        list, and the other items still run; with False the first failure is raised.
        """
        items = list(prompts)
        if not items:
            return []
        workers = max_parallel or min(len(items), 32)

        def one(p: str):
            try:
                return self.generate(p)
            except Mk1Error as e:
                if return_exceptions:
                    return e
                raise

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"mk1-{self.name}") as pool:
            return list(pool.map(one, items))

    def spawn(self, prompt: str) -> "Call":
        """Start an async (Event) invocation; `.result()` waits for its answer."""
        r = self.invoke({"prompt": prompt}, invocation_type="Event")
        return Call(self, r.request_id)

    # -- helpers --
    def _call(self, invocation_type: str, tail: bool, body) -> dict:
        try:
            return self._client.invoke(FunctionName=self.name, InvocationType=invocation_type,
                                       LogType="Tail" if tail else "None", Payload=body)
        except ClientError as e:
            raise _translate(e, self.endpoint) from None
        except (EndpointConnectionError, BotoConnectionError, ReadTimeoutError) as e:
            if isinstance(e, ReadTimeoutError):
                raise InvocationTimeout("ReadTimeout", f"no answer from {self.endpoint}: {e}") from None
            raise ConnectionError(f"cannot reach the dispatcher at {self.endpoint}. {HINT}") from None

    def _text(self, r: InvokeResult) -> str:
        if r.function_error:
            raise _function_error(r.payload, r.request_id)
        if not isinstance(r.payload, dict) or "response" not in r.payload:
            raise FunctionError("InvalidResponse", f"the function answered without a response: {r.payload!r}",
                                request_id=r.request_id)
        return r.payload["response"]

    def _result(self, r: dict) -> InvokeResult:
        h = r["ResponseMetadata"]["HTTPHeaders"]
        raw = r["Payload"].read() if "Payload" in r else b""
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        ran = run_header.run_of(h)
        num = lambda k: run_header.number(ran, k)  # noqa: E731
        return InvokeResult(payload=payload, request_id=r["ResponseMetadata"]["RequestId"],
                            status_code=r["StatusCode"], function_error=r.get("FunctionError"),
                            duration_ms=num("duration-ms"), wait_ms=num("wait-ms"), init_ms=num("init-ms"),
                            cold=(ran["cold"] == "true") if "cold" in ran else None,
                            container=ran.get("container"), started_at=num("started-at"),
                            log=base64.b64decode(r["LogResult"]).decode("utf-8", "replace")
                            if r.get("LogResult") else None, headers=dict(h))

    def _get(self, path: str, query: dict | None = None) -> dict:
        try:
            status, body = signed_get(self.endpoint, path, self._creds, self.region, query)
        except OSError as e:
            raise ConnectionError(f"cannot reach the dispatcher at {self.endpoint}: {e}. {HINT}") from None
        if status >= 400:
            cls = NotFound if status == 404 else PermissionDenied if status == 403 else Mk1Error
            raise cls(body.get("message", str(body)))
        return body


def _function_error(payload: Any, request_id: str) -> FunctionError:
    p = payload if isinstance(payload, dict) else {"errorMessage": str(payload)}
    etype, msg = p.get("errorType", "Unhandled"), p.get("errorMessage", "")
    cls = InvocationTimeout if etype == "Sandbox.Timedout" else FunctionError
    return cls(etype, msg, request_id=request_id)


class Call:
    """A spawned (async) invocation. `result()` polls the dispatcher for its outcome."""

    def __init__(self, function: Function, request_id: str):
        self.function, self.request_id = function, request_id

    def __repr__(self) -> str:
        return f"Call({self.function.name!r}, request_id={self.request_id!r})"

    def status(self) -> dict:
        return self.function._get(f"/mk1/invocations/{self.request_id}")

    def result(self, timeout: float | None = None, poll: float = 0.1) -> str:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            st = self.status()
            if st.get("status") in ("succeeded", "failed"):
                payload = json.loads(base64.b64decode(st.get("payload") or "") or b"null")
                if st["status"] == "failed":
                    raise _function_error(payload, self.request_id)
                return payload["response"]
            if deadline is not None and time.monotonic() > deadline:
                raise InvocationTimeout("Timeout", f"no result for {self.request_id} within {timeout} s "
                                        f"(status {st.get('status')})", request_id=self.request_id)
            time.sleep(poll)


def _translate(e: ClientError, endpoint: str = "") -> Mk1Error:
    err = e.response.get("Error", {})
    code = err.get("Code", "")
    msg = err.get("Message") or e.response.get("message") or str(e)
    rid = e.response.get("ResponseMetadata", {}).get("RequestId", "")
    cls = _ERRORS.get(code)
    if cls is Throttled:   # AWS's "Rate Exceeded." and, beside it, why mk1 refused (X-Mk1-Detail)
        headers = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        detail = headers.get("x-mk1-detail")
        return Throttled(f"{msg} {detail}" if detail else msg, retry_after=float(headers.get("retry-after", "1")),
                         code=code, request_id=rid)
    if cls is AuthenticationFailed and endpoint:   # which mk1 refused, and the usual cause
        msg = (f"{msg} (the dispatcher at {endpoint} does not know this key: are the keys in "
               f"{settings_mod.load().credentials_file} from this mk1's `make up`?)")
    if cls is None:
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        cls = BadRequest if 400 <= status < 500 else Mk1Error
    return cls(msg, code=code, request_id=rid)


class Alpha(Function):
    """RuntimeAlpha. `Alpha(user="user1").generate("hi")`"""

    def __init__(self, user: str = "admin", **kw):
        super().__init__("RuntimeAlpha", user, **kw)


class Beta(Function):
    """RuntimeBeta. `Beta(user="user2").generate("hi")`"""

    def __init__(self, user: str = "admin", **kw):
        super().__init__("RuntimeBeta", user, **kw)
