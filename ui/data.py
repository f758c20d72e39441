"""What the UI shows, without Streamlit: a batch of invocations, the dispatcher's status,
usage records and the billing report, and the timeline built from them.

Settings are read at call time (never at import), so MK1_HOME / MK1_ENDPOINT set by a
test or by `make up` are honoured on every rerun of the app.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Iterator

from botocore.credentials import Credentials

from my_mk1_homework import settings as settings_mod
from my_mk1_homework.client import Function, load_profile
from my_mk1_homework.errors import (AuthenticationFailed, ConnectionError, FunctionError, Mk1Error, NotFound,
                                    PermissionDenied, Throttled)
from my_mk1_homework.signed import signed_get

USERS = ("user1", "user2", "admin")
RUNTIMES = ("RuntimeAlpha", "RuntimeBeta")
MAX_CALLS = 20
START_HINT = ("Start mk1 with `make up` in the project directory (or point MK1_ENDPOINT at a running "
              "dispatcher), then reload this page.")

# Answer.status values, in the order the UI lists them.
OK, FUNCTION_ERROR, DENIED, THROTTLED, UNAUTHENTICATED, UNREACHABLE, ERROR = (
    "ok", "function error", "denied", "throttled", "unauthenticated", "unreachable", "error")


class Unreachable(Exception):
    """The dispatcher did not answer (or answered something that is not mk1)."""


def endpoint() -> str:
    return settings_mod.load().dispatcher_url


# -- unsigned routes ---------------------------------------------------------------------

def _get_json(url: str, timeout: float) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return {"http_status": e.code, **json.loads(e.read() or b"{}")}
        except ValueError:
            raise Unreachable(f"{url} answered HTTP {e.code}, not mk1's dispatcher") from None
    except (OSError, ValueError) as e:
        raise Unreachable(f"cannot reach the dispatcher at {url}: {getattr(e, 'reason', e)}") from None


def health(url: str | None = None, timeout: float = 2.0) -> dict | None:
    """The dispatcher's /health, or None when it does not answer."""
    try:
        return _get_json((url or endpoint()).rstrip("/") + "/health", timeout)
    except Unreachable:
        return None


def status(url: str | None = None, timeout: float = 5.0) -> dict:
    """GET /mk1/status: backend, functions (pool, concurrency) and queue depths."""
    return _get_json((url or endpoint()).rstrip("/") + "/mk1/status", timeout)


# -- one batch of invocations -------------------------------------------------------------

@dataclass
class Answer:
    """One call of the batch, as the UI shows it."""
    index: int
    runtime: str
    prompt: str
    submitted: float                 # epoch seconds, client clock
    status: str = ""
    text: str = ""                   # the response, or what went wrong
    request_id: str = ""
    duration_ms: float | None = None
    wait_ms: float | None = None
    init_ms: float | None = None
    cold: bool | None = None
    container: str | None = None
    started_at: float | None = None  # epoch seconds, the dispatcher's clock (X-Mk1-Run started-at)
    finished: float | None = None


def plan(n_alpha: int, prompt_alpha: str, n_beta: int, prompt_beta: str) -> list[tuple[str, str]]:
    """The calls of a batch, interleaved so both runtimes start at once."""
    alpha = [("RuntimeAlpha", prompt_alpha)] * max(0, min(int(n_alpha), MAX_CALLS))
    beta = [("RuntimeBeta", prompt_beta)] * max(0, min(int(n_beta), MAX_CALLS))
    out = []
    for i in range(max(len(alpha), len(beta))):
        out += alpha[i:i + 1] + beta[i:i + 1]
    return out


def describe_error(e: BaseException, user: str, runtime: str, url: str) -> tuple[str, str]:
    """(status, one-line message) for an exception of a call: never a traceback."""
    if isinstance(e, PermissionDenied):
        return DENIED, f"{user} is not allowed to invoke {runtime}"
    if isinstance(e, Throttled):
        return THROTTLED, (f"{runtime} throttled the call (429, retry after {e.retry_after:g} s): "
                           f"{e.message}")
    if isinstance(e, AuthenticationFailed):
        return UNAUTHENTICATED, (f"the credentials of {user} were rejected ({e.code or 'auth'}): "
                                 f"re-run `make up` for fresh ones. {e.message}")
    if isinstance(e, ConnectionError):   # its message says what to do (`make up`)
        return UNREACHABLE, e.message or f"cannot reach the dispatcher at {url}. {START_HINT}"
    if isinstance(e, FunctionError):
        return FUNCTION_ERROR, e.message
    if isinstance(e, NotFound):
        return ERROR, f"{runtime} does not exist: {e.message}"
    if isinstance(e, Mk1Error):
        return ERROR, e.message
    return ERROR, f"{type(e).__name__}: {e}"


class KeyUser(str):
    """A caller known by the keys typed into the page (a UI bound beyond loopback asks for them
    instead of offering the profiles in .mk1/credentials); its text is what the page calls it."""
    akid: str
    secret: str

    def __new__(cls, akid: str, secret: str) -> "KeyUser":
        self = super().__new__(cls, f"key {akid[:8]}…" if akid else "no key")
        self.akid, self.secret = akid, secret
        return self


def keys_of(user: str) -> tuple[str, str]:
    """(access key id, secret key): typed in (KeyUser), or the user's profile in .mk1/credentials."""
    if isinstance(user, KeyUser):
        return user.akid, user.secret
    return load_profile(user)


def beyond_loopback(address: str | None) -> bool:
    """Is the UI served to other machines (a bind address that is not 127.x, ::1 or localhost)?"""
    a = (address or "").strip()
    return bool(a) and not (a.startswith("127.") or a in ("::1", "localhost"))


def _client(runtime: str, user: str, url: str) -> Function:
    if isinstance(user, KeyUser):
        return Function(runtime, "admin", endpoint=url, access_key_id=user.akid, secret_access_key=user.secret)
    return Function(runtime, user, endpoint=url)


def _call(fn: Function | BaseException, a: Answer, user: str, url: str) -> Answer:
    try:
        if isinstance(fn, BaseException):
            raise fn
        r = fn.invoke({"prompt": a.prompt})
    except Exception as e:  # noqa: BLE001 - every failure becomes a message, never a traceback
        a.status, a.text = describe_error(e, user, a.runtime, url)
        a.request_id = getattr(e, "request_id", "") or ""
    else:
        a.request_id, a.duration_ms, a.wait_ms = r.request_id, r.duration_ms, r.wait_ms
        a.init_ms, a.cold, a.container, a.started_at = r.init_ms, r.cold, r.container, r.started_at
        if r.function_error:
            p = r.payload if isinstance(r.payload, dict) else {"errorMessage": str(r.payload)}
            a.status = FUNCTION_ERROR
            a.text = f"{p.get('errorType', r.function_error)}: {p.get('errorMessage', '')}"
        elif isinstance(r.payload, dict) and "response" in r.payload:
            a.status, a.text = OK, str(r.payload["response"])
        else:
            a.status, a.text = FUNCTION_ERROR, f"answer without a response: {r.payload!r}"[:300]
    a.finished = time.time()
    return a


def run_batch(user: str, calls: list[tuple[str, str]], url: str | None = None,
              tick: float = 0.25) -> Iterator[Answer | None]:
    """Run every call in parallel (one thread pool across the runtimes).

    Yields each Answer as soon as it completes, and None every `tick` seconds while
    nothing completes (so the caller can refresh the pool view). Never raises for a call.
    """
    url = url or endpoint()
    clients: dict[str, Function | BaseException] = {}
    for runtime in {r for r, _ in calls}:
        try:
            clients[runtime] = _client(runtime, user, url)
        except Exception as e:  # noqa: BLE001 - e.g. no credentials file: reported per call
            clients[runtime] = e
    if not calls:
        return
    with ThreadPoolExecutor(max_workers=min(len(calls), 2 * MAX_CALLS), thread_name_prefix="mk1-ui") as pool:
        pending = {pool.submit(_call, clients[rt], Answer(i, rt, prompt, time.time()), user, url)
                   for i, (rt, prompt) in enumerate(calls)}
        while pending:
            done, pending = wait(pending, timeout=tick, return_when=FIRST_COMPLETED)
            if not done:
                yield None
            for f in sorted(done, key=lambda f: f.result().finished or 0):
                yield f.result()


def summary(answers: Iterable[Answer]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in answers:
        out[a.status] = out.get(a.status, 0) + 1
    return out


# -- signed routes: usage and billing --------------------------------------------------------

def _signed(user: str, path: str, query: dict | None, url: str | None) -> dict:
    # 30 s: an admin's usage is a scan of the whole usage table, which on the embedded AWS with
    # many thousand records and a busy machine took over 10 s (the UI said "cannot reach").
    s = settings_mod.load()
    url = url or s.dispatcher_url
    akid, secret = keys_of(user)
    try:
        code, body = signed_get(url, path, Credentials(akid, secret), s.region,
                                {k: v for k, v in (query or {}).items() if v}, timeout=30)
    except OSError as e:
        raise Unreachable(f"cannot reach the dispatcher at {url}: {getattr(e, 'reason', e)}") from None
    if code == 403:
        raise PermissionDenied(body.get("message", str(body)))
    if code >= 400:
        raise Mk1Error(f"{path} answered HTTP {code}: {body.get('message', body)}")
    return body


# Always sent: a dispatcher before d428e51 answered HTTP 500 to a user/function query without `since`.
EPOCH = "1970-01-01T00:00:00.000Z"
WINDOWS = {"last 15 minutes": 900, "last hour": 3600, "last 24 hours": 86400, "all time": None}


def window_start(window: str, now: float | None = None) -> str:
    seconds = WINDOWS.get(window)
    return EPOCH if seconds is None else iso((time.time() if now is None else now) - seconds)


def usage(user: str, *, who: str = "", function: str = "", since: str = "", until: str = "",
          url: str | None = None) -> list[dict]:
    """Usage records, signed as `user` (admin sees all; a user only their own)."""
    q = {"user": who, "function": function, "since": since or EPOCH, "until": until}
    return _signed(user, "/mk1/usage", q, url).get("records", [])


def report(user: str, *, who: str = "", function: str = "", since: str = "", url: str | None = None) -> dict:
    q = {"user": who, "function": function, "since": since or EPOCH}
    return _signed(user, "/mk1/usage/report", q, url)


def iso(t: float) -> str:
    """Epoch seconds as the usage records spell time: 2026-01-02T03:04:05.678Z."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def epoch(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def batch_records(user: str, request_ids: Iterable[str], since: float, timeout: float = 3.0,
                  poll: float = 0.15, url: str | None = None) -> list[dict]:
    """The usage records of these request ids; they are written ~0.2 s after each answer,
    so poll until all are there or `timeout` runs out (then return what arrived)."""
    want = {r for r in request_ids if r}
    if not want:
        return []
    deadline = time.monotonic() + timeout
    found: dict[str, dict] = {}
    while True:
        try:
            for r in usage(user, who=user, since=iso(since - 2), url=url):
                if r.get("request_id") in want:
                    found[r["request_id"]] = r
        except (Unreachable, Mk1Error):
            pass
        if len(found) >= len(want) or time.monotonic() >= deadline:
            return list(found.values())
        time.sleep(poll)


# -- the timeline ------------------------------------------------------------------------------

WAIT, INIT, RUN = "waiting in the queue", "init (cold start)", "run"
PHASES = (WAIT, INIT, RUN)


def timeline(answers: list[Answer], records: list[dict]) -> tuple[list[dict], str]:
    """Bars for the Gantt chart: one per phase (queue wait, init, run) of each execution.

    From the usage records where they arrived; for calls without a record, from the answer's
    X-Mk1-Run's started-at and durations (the same span the record will show), or failing those the
    client's clock (end = when the answer arrived). Returns (rows, source)."""
    by_id = {r["request_id"]: r for r in records if r.get("container_id")}
    spans: list[dict] = []
    client_side = 0
    for a in answers:
        r = by_id.get(a.request_id)
        if r is not None:
            start, end = epoch(r["start"]), epoch(r["end"])
            init_ms, container, status = r.get("init_ms") or 0.0, r["container_id"], r.get("status", "")
            dur = r.get("duration_ms") or 0.0
        elif a.container and a.finished and a.duration_ms is not None:
            client_side += 1
            init_ms, dur = a.init_ms or 0.0, a.duration_ms
            # The answer reaches the client after the slot is free again: its arrival is not the
            # end of the execution. The dispatcher's start time is exact where it is given.
            start = a.started_at if a.started_at is not None else a.finished - (dur + init_ms) / 1000
            end = start + (dur + init_ms) / 1000
            container, status = a.container, a.status
        else:
            continue   # refused before it ran: nothing on the timeline
        base = {"runtime": a.runtime, "container": container, "request_id": a.request_id,
                "status": status, "duration_ms": round(dur, 1), "init_ms": round(init_ms, 1),
                "wait_ms": round(a.wait_ms or 0.0, 1), "call_start": start, "call_end": end}
        if a.wait_ms:   # before its slot: waiting in the function's queue (drawn, not counted as running)
            spans.append({**base, "phase": WAIT, "start": start - a.wait_ms / 1000, "end": start})
        if init_ms:
            spans.append({**base, "phase": INIT, "start": start,
                          "end": min(end, start + init_ms / 1000)})
        spans.append({**base, "phase": RUN, "start": max(start, end - dur / 1000) if init_ms else start,
                      "end": end})
    if spans:
        t0 = min(s["start"] for s in spans)
        for s in spans:
            s["start_s"], s["end_s"] = round(s["start"] - t0, 4), round(s["end"] - t0, 4)
    n = len({s["request_id"] for s in spans})
    if client_side == 0:
        source = "usage records"
    elif client_side == n:
        source = "the answers' timestamps (the usage records had not arrived)"
    else:
        source = f"usage records, and the answers' timestamps for {client_side} of {n} calls"
    return spans, source


def max_concurrent(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals [start, end) open at one instant (an end before a start at a tie)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    peak = cur = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def max_concurrent_by_runtime(spans: list[dict]) -> dict[str, int]:
    calls: dict[str, dict[str, tuple[float, float]]] = {}
    for s in spans:
        calls.setdefault(s["runtime"], {})[s["request_id"]] = (s["call_start"], s["call_end"])
    return {rt: max_concurrent(calls[rt].values()) for rt in RUNTIMES if rt in calls}


# -- function URLs -----------------------------------------------------------------------------

def function_urls(status: dict | None) -> list[dict]:
    """The function URLs the dispatcher serves (from /mk1/status)."""
    return list((status or {}).get("function_urls") or [])


def call_url(url: str, method: str, path: str, body: str, user: str | None,
             timeout: float = 60) -> tuple[int, dict, Iterator[bytes]]:
    """One call of a function URL: (status, headers, its body as it arrives). An AWS_IAM URL is
    signed with `user`'s key (SigV4, service lambda); chunks of a streamed answer come as sent."""
    import http.client
    from urllib.parse import urlsplit

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    target = url.rstrip("/") + "/" + path.lstrip("/")
    parts = urlsplit(target)
    headers = {"Host": parts.netloc}
    data = body.encode() if body and method not in ("GET", "HEAD") else b""
    if data:
        headers["Content-Type"] = "application/json"
    if user:
        akid, secret = keys_of(user)
        req = AWSRequest(method=method, url=target, data=data, headers=headers)
        SigV4Auth(Credentials(akid, secret), "lambda", settings_mod.load().region).add_auth(req)
        headers = dict(req.headers.items())
    # *.localhost names the loopback: connect there, send the URL's own host name
    conn = http.client.HTTPConnection("127.0.0.1", parts.port or 80, timeout=timeout)
    conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=data or None,
                 headers=headers)
    resp = conn.getresponse()

    def chunks() -> Iterator[bytes]:
        try:
            while True:
                piece = resp.read1(65536)
                if not piece:
                    return
                yield piece
        finally:
            conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, chunks()
