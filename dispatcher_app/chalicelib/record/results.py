"""Results of async (Event) invocations, kept so a client can fetch them by request id.

A DynamoDB item holds at most 400 KB: a larger answer goes to S3 (payloads.py) and the
item keeps its key. The embedded AWS keeps its tables in memory, so each settled result (succeeded,
failed, expired) is also appended to MK1_HOME/async-results.jsonl and read back when the dispatcher
starts: a result outlives a crash or restart of both the AWS endpoint and the dispatcher for a day.

Memory holds the recent ones only: results settled over a day ago leave it, and so do the oldest
once the answers held pass MEM_PAYLOAD_BYTES (a long run of Event calls grew the dispatcher without
bound). One that left memory is read from DynamoDB, or from the log if the endpoint lost it.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
from pathlib import Path

from infra import names

from chalicelib.admit import payloads
from chalicelib.jsonl import JsonLines
from chalicelib.model import Outcome


log = logging.getLogger("mk1.results")

KEPT_S = 86_400           # a settled result is answered for a day after it settled
COMPACT_MIN_LINES = 1_000  # appended results before the log is compacted while running (and twice those kept)
MEM_PAYLOAD_BYTES = 64 << 20   # answers (base64) held in memory; older ones are read back
SETTLED = ("succeeded", "failed", "expired")


class ResultLog:
    """The settled results on disk, one JSON line each; read back (the last line per request id,
    within KEPT_S). Rewritten with only those at start, and while running once the lines appended
    since outnumber twice those kept: a long run of Event calls grew it until the next start."""

    def __init__(self, path: Path, clock=time.time, compact_min_lines: int = COMPACT_MIN_LINES):
        self.path, self.clock = path, clock
        self._lock = threading.Lock()
        self._lines = JsonLines(path, compact_min_lines, self._lock)

    def _kept(self, needle: bytes = b"", upto: int | None = None):
        """The file's results within KEPT_S, in the order written (only lines holding `needle`; of
        its first `upto` bytes, if given)."""
        if not self.path.exists():
            return
        cutoff = self.clock() - KEPT_S
        read = 0
        with open(self.path, "rb") as f:
            for raw in f:
                read += len(raw)
                if upto is not None and read > upto:
                    return
                if needle not in raw:
                    continue
                try:
                    item = json.loads(raw)
                except ValueError:
                    continue   # a torn last line after a crash
                if isinstance(item, dict) and item.get("request_id") and float(item.get("updated_at") or 0) >= cutoff:
                    yield item

    def _latest(self, upto: int | None = None) -> dict[str, dict]:
        return {item["request_id"]: item for item in self._kept(upto=upto)}

    def _snapshot(self):
        """A rewrite's results as of now (under the lock): the file's lines so far, read without it."""
        upto = self._lines.size()
        return lambda: self._latest(upto).values()

    def load(self) -> dict[str, dict]:
        """The last result per call within KEPT_S; the file is rewritten with those alone."""
        with self._lock:
            kept = self._latest()
            if self.path.exists():
                self._lines.rewrite(kept.values())
            return kept

    def append(self, item: dict) -> None:
        with self._lock:
            due = self._lines.append(item, True, self._snapshot)
        if due is not None:   # a rewrite, without the lock (jsonl.py)
            due()

    def find(self, request_id: str) -> dict | None:
        """The last line for this call within KEPT_S: a scan of the file, for a result that is in
        neither memory nor the AWS endpoint (rare: it left memory, then the endpoint restarted)."""
        found = None
        with self._lock:
            for item in self._kept(json.dumps(request_id).encode()):
                if item["request_id"] == request_id:
                    found = item
        return found


class Results:
    """In memory for speed, in DynamoDB (mk1-async-results) so other dispatchers see them, and the
    settled ones in a ResultLog so they outlive the AWS endpoint's restart too."""

    def __init__(self, ddb, s3, log_path: Path | None = None, clock=time.time,
                 mem_payload_bytes: int = MEM_PAYLOAD_BYTES):
        self.ddb, self.s3, self.clock = ddb, s3, clock
        # By request id, in the order they last changed: the oldest leave first (_trim_locked).
        self._mem: dict[str, dict] = {}
        self._mem_bytes, self._mem_limit = 0, mem_payload_bytes
        self._lock = threading.Lock()
        self._log = ResultLog(log_path, clock) if log_path else None
        if self._log is not None:
            try:
                loaded = self._log.load()
            except OSError as e:   # the results of before are lost, the dispatcher still serves
                log.warning("could not read %s: %s", log_path, e)
                loaded = {}
            with self._lock:
                for request_id, item in sorted(loaded.items(), key=lambda kv: float(kv[1].get("updated_at") or 0)):
                    self._remember_locked(request_id, item)

    def pending(self, request_id: str, function: str, user: str) -> None:
        self._put({"request_id": request_id, "function": function, "user": user, "status": "queued",
                   "attempts": 0, "updated_at": self.clock()})

    def update(self, request_id: str, status: str, outcome: Outcome, attempts: int) -> None:
        current = self.get(request_id) or {"request_id": request_id}
        current.pop("payload", None)
        packed = payloads.pack(self.s3, outcome.payload, f"result-{request_id}")
        stored = {"payload": packed["b64"]} if "b64" in packed else {"payload_s3": packed["s3"]}
        now = {**current, "status": status, "attempts": attempts, "updated_at": self.clock(),
               "function_error": outcome.error_type if outcome.is_error else None}
        kept = {**now, "payload": base64.b64encode(outcome.payload).decode()}
        with self._lock:   # memory keeps the answer itself; the item may point to S3
            self._remember_locked(request_id, kept)
        if self._log is not None and status in SETTLED:
            try:
                self._log.append(kept)
            except OSError as e:
                log.warning("async result %s not written to %s: %s", request_id, self._log.path, e)
        self._put({**now, **stored}, remember=False)

    def _put(self, item: dict, remember: bool = True) -> None:
        if remember:
            with self._lock:
                self._remember_locked(item["request_id"], item)
        self.ddb.put_item(TableName=names.RESULTS_TABLE, Item={
            k: ({"NULL": True} if v is None else {"N": str(v)} if isinstance(v, (int, float)) else {"S": str(v)})
            for k, v in item.items()})

    def _remember_locked(self, request_id: str, item: dict) -> None:
        old = self._mem.pop(request_id, None)   # popped: it moves to the newest end
        if old is not None:
            self._mem_bytes -= len(old.get("payload") or "")
        self._mem[request_id] = item
        self._mem_bytes += len(item.get("payload") or "")
        self._trim_locked()

    def _trim_locked(self) -> None:
        """The oldest leave memory while the answers held exceed the limit, or once they are over
        KEPT_S old. What left is still in DynamoDB (and, settled, in the log)."""
        cutoff = self.clock() - KEPT_S
        while self._mem:
            request_id, oldest = next(iter(self._mem.items()))
            over = self._mem_bytes > self._mem_limit and len(self._mem) > 1
            if not (over or float(oldest.get("updated_at") or 0) < cutoff):
                return
            del self._mem[request_id]
            self._mem_bytes -= len(oldest.get("payload") or "")

    def __len__(self) -> int:
        return len(self._mem)

    def get(self, request_id: str) -> dict | None:
        with self._lock:
            if request_id in self._mem:
                return dict(self._mem[request_id])
        try:
            resp = self.ddb.get_item(TableName=names.RESULTS_TABLE, Key={"request_id": {"S": request_id}})
        except Exception:   # the endpoint is down: a settled result is in the log; else 503 as before
            found = self._log.find(request_id) if self._log is not None else None
            if found is None:
                raise
            return found
        item = resp.get("Item")
        if not item:   # the endpoint restarted and lost it: a settled one is in the log
            return self._log.find(request_id) if self._log is not None else None
        out = {k: (None if "NULL" in v else float(v["N"]) if "N" in v else v["S"]) for k, v in item.items()}
        if out.get("payload_s3"):
            out["payload"] = base64.b64encode(payloads.unpack(self.s3, {"s3": out.pop("payload_s3")})).decode()
        return out
