"""Record: one usage record per finished invocation, and the function logs.

Everything here is written off the call path by one background writer that
batches: usage records go first to `.mk1/usage.log` (appended, flushed and
fsync'd per batch), then to the DynamoDB usage table; log lines go to CloudWatch
Logs (one stream per container). A failed write is retried with backoff and
reported (log + metric + `health()`), never dropped; `drain()` empties the
backlog on shutdown.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

from infra import names

from chalicelib.record.usage import usage_item

log = logging.getLogger("mk1.record")

MAX_PENDING_LOG_EVENTS = 100_000


class Recorder:
    """batch_s: how long a usage record may wait (it is billing: kept short); logs_batch_s: how long a
    log line may wait. Each PutLogEvents is one request per container stream, which costs the
    dispatcher ~1 ms and moto ~1.5 ms of the cores the functions run on: at the cap (58 calls/s over
    3 streams) writing them every 200 ms was ~15 requests a second, every second ~3."""

    def __init__(self, ddb, logs, usage_log: Path, clock, batch_s: float = 0.2, metrics=None,
                 logs_batch_s: float | None = None):
        self.ddb, self.logs, self.path, self.clock = ddb, logs, usage_log, clock
        self.batch_s = batch_s
        self.logs_batch_s = batch_s if logs_batch_s is None else max(batch_s, logs_batch_s)
        self._events_written_at = clock.monotonic()
        self.metrics = metrics
        self._cond = threading.Condition()
        self._usage: deque[dict] = deque()
        self._events: deque[tuple[str, str, int, str]] = deque()   # (group, stream, ts_ms, message)
        self._streams: set[tuple[str, str]] = set()
        self._running = True
        self.written = 0
        self.dropped_log_events = 0
        self.failures = 0
        self.last_error: str | None = None
        self._to_table: deque[dict] = deque()   # in the log file, not yet in the table
        self._notify: dict[str, threading.Event] = {}
        self._promised = 0                      # records of answered calls, on their way (promise())
        self._appending = 0                     # records being appended to the usage log now
        self._thread = threading.Thread(target=self._loop, daemon=True, name="recorder")
        self._thread.start()

    # -- producers (the call path: no I/O here) --
    def promise(self) -> None:
        """A record will follow (usage(..., promised=True)) once its call's answer has been sent:
        counted in the backlog meanwhile, and waited for by drain()."""
        with self._cond:
            self._promised += 1

    def usage(self, record: dict, written: threading.Event | None = None, promised: bool = False) -> None:
        """Queue a record; `written` (if given) is set once it is in the usage table."""
        with self._cond:
            self._usage.append(record)
            if written is not None:
                self._notify[record["request_id"]] = written
            if promised:
                self._promised -= 1   # drain() looks again within 50 ms
            self._cond.notify()

    def log(self, group: str, stream: str, lines: list[str], ts: float | None = None) -> None:
        """Lines to a log group: the function's (FunctionConfig.log_group: its LoggingConfig's, else
        /aws/lambda/<name>), made on first use."""
        ts_ms = int((ts if ts is not None else self.clock.time()) * 1000)
        with self._cond:
            for line in lines:
                self._events.append((group, stream, ts_ms, line))
            self._cond.notify()

    # -- the writer --
    def _loop(self) -> None:
        backoff = 0.2
        while True:
            with self._cond:
                if self._running and not (self._usage or self._events or self._to_table):
                    self._cond.wait(1.0)
                if not self._running and not (self._usage or self._events or self._to_table):
                    return
            if self._running:
                self.clock.sleep(self.batch_s)   # let a batch gather
            events_due = not self._running or \
                self.clock.monotonic() - self._events_written_at >= self.logs_batch_s
            try:
                self._write_batch(events=events_due)
                backoff = 0.2
            except Exception as e:
                self.failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
                if self.metrics:
                    self.metrics.record_failures.inc()
                log.error("writing usage/logs failed (%s); will retry in %.1f s", self.last_error, backoff)
                threading.Event().wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _write_batch(self, events: bool = True) -> None:
        with self._cond:
            fresh = list(self._usage)
            self._usage.clear()
            self._appending = len(fresh)   # in neither deque while appended: backlog() counts them here
        if fresh:
            try:
                self._append_log(fresh)
            except Exception:
                with self._cond:   # put them back, in order, for the retry
                    self._usage.extendleft(reversed(fresh))
                    self._appending = 0
                raise
            with self._cond:
                self._to_table.extend(fresh)
                self._appending = 0
        while self._to_table:
            batch = [self._to_table[i] for i in range(min(25, len(self._to_table)))]
            self._put_items(batch)
            for _ in batch:
                self._to_table.popleft()
            self.written += len(batch)
            with self._cond:
                for r in batch:
                    event = self._notify.pop(r["request_id"], None)
                    if event is not None:
                        event.set()
        if events:
            self._write_events()
            self._events_written_at = self.clock.monotonic()

    def _append_log(self, records: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        except OSError:
            # A full disk can take part of the batch: cut it off, so the retry leaves no torn line.
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            raise
        finally:
            os.close(fd)

    def _put_items(self, records: list[dict]) -> None:
        requests = {names.USAGE_TABLE: [{"PutRequest": {"Item": usage_item(r)}} for r in records]}
        for _ in range(8):
            resp = self.ddb.batch_write_item(RequestItems=requests)
            requests = resp.get("UnprocessedItems") or {}
            if not requests:
                return
            threading.Event().wait(0.1)
        raise RuntimeError("DynamoDB left items unprocessed after 8 attempts")

    def _write_events(self) -> None:
        with self._cond:
            events = list(self._events)
            self._events.clear()
        by_stream: dict[tuple[str, str], list] = {}
        for group, stream, ts, msg in events:
            by_stream.setdefault((group, stream), []).append({"timestamp": ts, "message": msg})
        done: set[tuple[str, str]] = set()
        try:
            for (group, stream), evs in by_stream.items():
                evs.sort(key=lambda e: e["timestamp"])
                try:
                    self._put_events(group, stream, evs)
                except self.logs.exceptions.ResourceNotFoundException:
                    # The AWS endpoint restarted and lost the stream (or group): make them again.
                    self._streams.discard((group, stream))
                    self._ensure_group(group)
                    self._put_events(group, stream, evs)
                done.add((group, stream))
        except Exception:
            rest = [e for e in events if (e[0], e[1]) not in done]
            with self._cond:
                self._events.extendleft(reversed(rest))
                self._trim_events()
            raise

    def _put_events(self, group: str, stream: str, evs: list) -> None:
        if (group, stream) not in self._streams:
            try:
                self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
            except self.logs.exceptions.ResourceAlreadyExistsException:
                pass
            self._streams.add((group, stream))
        self.logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=evs)

    def _ensure_group(self, group: str) -> None:
        try:
            self.logs.create_log_group(logGroupName=group)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass

    def _trim_events(self) -> None:
        """Caller holds the lock. Function logs (not usage) are bounded while CloudWatch is down."""
        excess = len(self._events) - MAX_PENDING_LOG_EVENTS
        if excess > 0:
            for _ in range(excess):
                self._events.popleft()
            self.dropped_log_events += excess
            log.error("CloudWatch Logs unreachable: dropped the %d oldest log lines", excess)

    # -- lifecycle --
    def drain(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._promised and time.monotonic() < deadline:
                self._cond.wait(0.05)   # calls answered a moment ago: their records come next
            self._running = False
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def backlog(self) -> int:
        return len(self._usage) + self._appending + len(self._to_table) + self._promised

    def health(self) -> dict:
        return {"written": self.written, "backlog": self.backlog(), "failures": self.failures,
                "last_error": self.last_error, "dropped_log_events": self.dropped_log_events}
