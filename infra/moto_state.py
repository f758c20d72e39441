"""The embedded AWS's control plane, kept across its restarts: a journal of the requests that
changed it, replayed into a fresh moto before it serves.

moto keeps everything in memory: a crash, `make down` or a machine restart lost every function a
user deployed, its versions, aliases, URLs and configuration, IAM changes and the users' keys. Here
each successful request that changes the control plane (Lambda, IAM, Secrets Manager, S3 objects,
queue and table definitions, ...) is appended to MK1_HOME/aws-state.jsonl (flushed and fsynced
before its answer leaves) and, at the next start, sent again to the new moto, in order, before the
port opens. The data plane is not journaled: SQS messages, DynamoDB items and log events are high
volume and have their own durable copies (the usage log, the accepted-calls journal: see
docs/OPERATIONS.md), so the journal grows with control-plane changes only.

Replayed requests make new ids where AWS makes random ones (an event source mapping's UUID), except
IAM access keys: a CreateAccessKey is journaled with the key it answered, and its replay gives the
new key that id and secret again, so every user's (and the README's) keys keep working across the
restart. Names, versions and aliases come back as they were, and function URL ids are derived from
the function (moto_lambda.py).
"""
from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

log = logging.getLogger("mk1.aws-state")

# Read-only or data-plane actions (JSON and query protocols): never journaled.
_READ = re.compile(r"^(Get|List|Describe|Head|Query|Scan|BatchGet|Receive|Filter|Test|Simulate|Lookup|Search|Check)")
_DATA = {"SendMessage", "SendMessageBatch", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility",
         "ChangeMessageVisibilityBatch", "PurgeQueue", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem",
         "TransactWriteItems", "PutLogEvents", "CreateLogStream", "PutMetricData", "Publish", "PublishBatch",
         "PutEvents", "AssumeRole", "GetCallerIdentity"}
# REST paths of the data plane (Lambda invocations, mk1's own routes).
_REST_DATA = re.compile(r"^/(2015-03-31/functions/[^/]+/invocations|2014-11-13/functions/[^/]+/invoke-async|"
                        r"2021-11-15/functions/[^/]+/response-streaming-invocations|_mk1/|moto-api/)")
_KEEP_HEADERS = ("content-type", "x-amz-target", "authorization", "host", "x-amz-content-sha256",
                 "x-amz-date", "content-md5")


def _action(method: str, path: str, query: str, headers: dict, body: bytes) -> str | None:
    target = headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    q = parse_qs(query)
    if "Action" in q:
        return q["Action"][0]
    if "x-www-form-urlencoded" in headers.get("content-type", "") and body:
        form = parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    return None


def journaled(method: str, path: str, query: str, headers: dict, body: bytes, payload_prefix: str) -> bool:
    """Does this request change the control plane?"""
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    action = _action(method, path, query, headers, body)
    if action is not None:
        return not _READ.match(action) and action not in _DATA
    if _REST_DATA.match(path):
        return False
    if payload_prefix and path.startswith(payload_prefix):
        return False   # spilled payloads of queued calls: data, kept by the accepted-calls journal
    return True


_KEY_RE = re.compile(rb"<AccessKeyId>([^<]+)</AccessKeyId>.*?<SecretAccessKey>([^<]+)</SecretAccessKey>", re.S)


def _access_key(answer: bytes) -> dict | None:
    """The key a CreateAccessKey answer (IAM's query XML) made: {"id", "secret"}."""
    m = _KEY_RE.search(answer or b"")
    return {"id": m.group(1).decode(), "secret": m.group(2).decode()} if m else None


def _give_back_key(made: dict | None, kept: dict) -> None:
    """The key the replay just made (random) takes the id and secret it had before the restart."""
    from moto.iam.models import iam_backends
    if not made:
        return
    for _account, partitions in list(iam_backends.items()):
        for backend in {id(b): b for b in partitions.values()}.values():
            key = backend.access_keys.pop(made["id"], None)
            if key is not None:
                key.access_key_id, key.secret_access_key = kept["id"], kept["secret"]
                backend.access_keys[kept["id"]] = key


class StateJournal:
    def __init__(self, path: Path, payload_prefix: str = ""):
        self.path = path
        self.payload_prefix = payload_prefix   # "/bucket/prefix/" of queued calls' spilled payloads
        self._lock = threading.Lock()
        self._file = None
        self.replaying = False

    def record(self, method: str, path: str, query: str, headers: dict, body: bytes, answer: bytes = b"") -> None:
        entry = {"m": method, "p": path, "q": query,
                 "h": {k: v for k, v in headers.items() if k in _KEEP_HEADERS},
                 "b": base64.b64encode(body).decode() if body else ""}
        key = _access_key(answer) if _action(method, path, query, headers, body) == "CreateAccessKey" else None
        if key:
            entry["key"] = key
        line = (json.dumps(entry) + "\n").encode()
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "ab")
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())   # ~0.15 ms, on control-plane changes only

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for raw in self.path.read_bytes().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue   # a torn last line after a crash
        return out

    def replay(self, app) -> tuple[int, int, float]:
        """Send every journaled request to `app` (moto's WSGI app) again: (sent, failed, seconds)."""
        entries = self.entries()
        started, failed = time.monotonic(), 0
        self.replaying = True
        try:
            for e in entries:
                body = base64.b64decode(e.get("b") or "")
                environ = {"REQUEST_METHOD": e["m"], "PATH_INFO": e["p"], "QUERY_STRING": e.get("q", ""),
                           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "4566", "SERVER_PROTOCOL": "HTTP/1.1",
                           "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
                           "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False,
                           "wsgi.run_once": False, "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1"}
                for k, v in e.get("h", {}).items():
                    if k == "content-type":
                        environ["CONTENT_TYPE"] = v
                    environ["HTTP_" + k.upper().replace("-", "_")] = v
                status: list[str] = []
                try:
                    answer = b"".join(app(environ, lambda s, h, exc=None: status.append(s)))
                    if e.get("key"):
                        _give_back_key(_access_key(answer), e["key"])
                except Exception as exc:   # one bad entry must not keep moto down
                    log.warning("replaying %s %s failed: %s", e["m"], e["p"], exc)
                    failed += 1
                    continue
                if status and not status[0].startswith(("2", "409")):
                    failed += 1
        finally:
            self.replaying = False
        return len(entries), failed, time.monotonic() - started

    def middleware(self, app):
        """WSGI: journal each successful control-plane change before its answer leaves."""
        def wsgi(environ, start_response):
            if self.replaying:
                return app(environ, start_response)
            method = environ.get("REQUEST_METHOD", "GET")
            path = environ.get("PATH_INFO", "")
            query = environ.get("QUERY_STRING", "")
            headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
            if environ.get("CONTENT_TYPE"):
                headers["content-type"] = environ["CONTENT_TYPE"]
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            if not journaled(method, path, query, headers, body, self.payload_prefix):
                return app(environ, start_response)
            seen: list[str] = []

            def capture(status, response_headers, exc_info=None):
                seen.append(status)
                return start_response(status, response_headers, exc_info)
            result = list(app(environ, capture))   # the answer is made before it is journaled ...
            if seen and seen[0][:1] == "2":
                self.record(method, path, query, headers, body, b"".join(result))   # ... and leaves only after
            return result
        return wsgi
