"""Accepted Event calls, kept on disk until they end: the write-ahead journal behind the queue.

An Event call's message lives in the function's SQS queue, which is the queue of record while the
AWS endpoint lives; the embedded one keeps its queues in memory, so its restart (a crash, `make
down`, a machine restart) lost every accepted call still queued. Before the 202 goes out, the call
is appended here (flushed and fsynced: ~0.15 ms); each attempt that ran is marked once its usage
record is written, and the call's end (success, retries exhausted, expired) closes it.

At start the dispatcher reads it: a call neither ended nor in its function's queue any more (the
queue came back empty) is sent again, at the attempt it had reached; a delivery of an attempt that
already ran is dropped (at-least-once delivery, each attempt run once, by request id). The file is
rewritten with only the calls still open and the ids ended within a day: at start, and while it
runs once the lines appended since outnumber twice those it kept (a long run of Event calls grew
the file, three lines a call with its payload, and the ended ids in memory, until the next start).
"""
from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from chalicelib.jsonl import JsonLines, Rewrite

ENDED_KEPT_S = 86_400   # an ended call's id is kept a day: a late redelivery of it is dropped
COMPACT_MIN_LINES = 10_000   # appended lines before a compaction while running (and twice those kept)


@dataclass
class OpenCall:
    body: dict                    # its latest queue message (attempt, payload as accepted)
    payload: bytes                # the call's payload itself (a spilled one lives in S3, which may be gone)
    ran: set[int] = field(default_factory=set)   # attempts that ran and were recorded


class CallJournal:
    def __init__(self, path: Path, usage_log: Path | None = None, clock=time.time,
                 compact_min_lines: int = COMPACT_MIN_LINES):
        self.path = path
        self.usage_log = usage_log   # attempts with a usage record there ran, marked or not
        self.clock = clock
        self._lock = threading.Lock()
        self._lines = JsonLines(path, compact_min_lines, self._lock)
        self._open: dict[str, OpenCall] = {}
        self._ended: dict[str, float] = {}   # request id -> when it ended (epoch s)
        self._load()

    # -- reading at start --
    def _load(self) -> None:
        if not self.path.exists():
            return
        for raw in self.path.read_bytes().splitlines():
            try:
                e = json.loads(raw)
            except ValueError:
                continue   # a torn last line after a crash
            rid = e.get("id")
            if "accepted" in e:
                prior = self._open.get(rid)
                self._open[rid] = OpenCall(e["accepted"], base64.b64decode(e.get("payload", "")),
                                           prior.ran if prior else set())
            elif "ran" in e and rid in self._open:
                self._open[rid].ran.add(int(e["ran"]))
            elif "ended" in e:
                self._open.pop(rid, None)
                self._ended[rid] = float(e.get("at") or self.clock())
        self._recorded_runs()
        self._lines.rewrite(self._snapshot()())

    def _recorded_runs(self) -> None:
        """An attempt whose usage record is in the usage log ran, even if the dispatcher died before
        marking it here: it is not run again. One whose latest attempt ran and succeeded has ended."""
        if not self._open or self.usage_log is None or not self.usage_log.exists():
            return
        outcome: dict[tuple[str, int], str] = {}
        with self.usage_log.open("rb") as f:
            for raw in f:
                if b'"Event"' not in raw:
                    continue
                try:
                    r = json.loads(raw)
                except ValueError:
                    continue
                if r.get("request_id") in self._open and r.get("invocation_type") == "Event":
                    outcome[(r["request_id"], int(r.get("attempt") or 0))] = r.get("status", "")
        for (rid, attempt), status in outcome.items():
            call = self._open[rid]
            call.ran.add(attempt)
            if status == "success" and attempt >= int(call.body.get("attempt", 0)):
                self._open.pop(rid, None)
                self._ended[rid] = self.clock()

    def _snapshot(self):
        """What a rewrite of the file keeps, as of now: the open calls and the ids ended within
        ENDED_KEPT_S (older ones leave memory too). At start, and when the file is due one (jsonl.py):
        copied under the lock, written out without it."""
        cutoff = self.clock() - ENDED_KEPT_S
        self._ended = {rid: at for rid, at in self._ended.items() if at >= cutoff}
        opened = [(rid, call.body, call.payload, sorted(call.ran)) for rid, call in self._open.items()]
        ended = list(self._ended.items())

        def build():
            for rid, body, payload, ran in opened:
                yield {"id": rid, "accepted": body, "payload": base64.b64encode(payload).decode()}
                for attempt in ran:
                    yield {"id": rid, "ran": attempt}
            for rid, at in ended:
                yield {"id": rid, "ended": True, "at": at}
        return build

    def open_calls(self) -> dict[str, OpenCall]:
        with self._lock:
            return dict(self._open)

    # -- writing --
    def _append_locked(self, entry: dict) -> Rewrite | None:
        return self._lines.append(entry, True, self._snapshot)

    def accepted(self, body: dict, payload: bytes) -> None:
        """Before the 202 (and before each retry is queued: its attempt number)."""
        with self._lock:
            prior = self._open.get(body["request_id"])
            self._open[body["request_id"]] = OpenCall(body, payload, prior.ran if prior else set())
            due = self._append_locked({"id": body["request_id"], "accepted": body,
                                       "payload": base64.b64encode(payload).decode()})
        if due is not None:   # a rewrite, without the lock (jsonl.py)
            due()

    def ran(self, request_id: str, attempt: int) -> None:
        """That attempt ran and its usage record is written: a redelivery of it is not run again."""
        with self._lock:
            call = self._open.get(request_id)
            if call is not None:
                call.ran.add(attempt)
            due = self._append_locked({"id": request_id, "ran": attempt})
        if due is not None:
            due()

    def ended(self, request_id: str) -> None:
        with self._lock:
            self._open.pop(request_id, None)
            now = self.clock()
            self._ended[request_id] = now
            due = self._append_locked({"id": request_id, "ended": True, "at": now})
        if due is not None:
            due()

    def already_ran(self, request_id: str, attempt: int) -> bool:
        with self._lock:
            if request_id in self._ended:
                return True
            call = self._open.get(request_id)
            return call is not None and attempt in call.ran

    def close(self) -> None:
        with self._lock:
            self._lines.close()
