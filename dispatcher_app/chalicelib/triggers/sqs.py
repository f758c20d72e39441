"""SQS event source mappings, run by mk1: poll, batch, invoke, delete, as Lambda does it.

https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html: Lambda polls the queue, reads up to
BatchSize messages (waiting up to MaximumBatchingWindowInSeconds to fill a batch), invokes the
function synchronously with {"Records": [...]} in AWS's SQS event shape, deletes the batch when the
function succeeds, and otherwise leaves it to the queue's visibility timeout and redrive policy.
With FunctionResponseTypes ReportBatchItemFailures only the items the function names in
batchItemFailures stay. FilterCriteria drop (delete) messages that match no filter.
ScalingConfig.MaximumConcurrency bounds the mapping's concurrent invocations; every invocation
also goes through the function's admission, so the reserved concurrency caps mappings and direct
callers together and they share the slots in queue order. A FIFO queue is polled one batch at a
time, which keeps each message group in order.
"""
from __future__ import annotations

import hashlib
import json
import logging
import queue as stdqueue
import threading
import time
from typing import Callable

from chalicelib.model import EventSourceMapping as Mapping

log = logging.getLogger("mk1.triggers")

RECEIVE_WAIT_S = 1           # long poll: an idle mapping costs one ReceiveMessage a second a worker
DEFAULT_WORKERS = 3          # concurrent batches of a mapping without ScalingConfig (its cap bounds them)
RECEIVERS = 2                # threads filling batches ahead of the workers (a standard queue)


# (mapping, event JSON) -> (function error?, response payload)
Invoke = Callable[[Mapping, bytes], tuple[bool, bytes]]


def sqs_record(msg: dict, source_arn: str, region: str) -> dict:
    """One message as Lambda's SQS event record."""
    attrs = {k: v for k, v in (msg.get("Attributes") or {}).items()}
    return {"messageId": msg["MessageId"], "receiptHandle": msg["ReceiptHandle"], "body": msg["Body"],
            "attributes": attrs,
            "messageAttributes": {k: {"stringValue": v.get("StringValue"), "binaryValue": v.get("BinaryValue"),
                                      "stringListValues": [], "binaryListValues": [], "dataType": v["DataType"]}
                                  for k, v in (msg.get("MessageAttributes") or {}).items()},
            "md5OfBody": msg.get("MD5OfBody") or hashlib.md5(msg["Body"].encode()).hexdigest(),
            "eventSource": "aws:sqs", "eventSourceARN": source_arn, "awsRegion": region}


def matches(patterns: tuple[str, ...], record: dict) -> bool:
    """Lambda's event filtering for the common patterns: exact values and prefix/exists on the
    record's fields and its JSON body (https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html)."""
    if not patterns:
        return True
    data = dict(record)
    try:
        data["body"] = json.loads(record["body"])
    except (ValueError, TypeError):
        pass
    return any(_match(json.loads(p), data) for p in patterns if p)


def _match(pattern, value) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(_match(p, value.get(k, _MISSING)) for k, p in pattern.items())
    if isinstance(pattern, list):
        return any(_leaf(p, value) for p in pattern)
    return pattern == value


_MISSING = object()


def _leaf(p, value) -> bool:
    if isinstance(p, dict):
        if "exists" in p:
            return (value is not _MISSING) == bool(p["exists"])
        if "prefix" in p:
            return isinstance(value, str) and value.startswith(p["prefix"])
        if "anything-but" in p:
            others = p["anything-but"] if isinstance(p["anything-but"], list) else [p["anything-but"]]
            return value is not _MISSING and value not in others
        return False
    return p == value


class Poller:
    """One mapping's threads: receivers fill batches ahead (the next batch is at hand when a worker
    frees), workers invoke and delete what succeeded. A standard queue's deletes are made by a
    deleter thread, off the workers' path; a FIFO queue's before its next batch (group order)."""

    def __init__(self, mapping: Mapping, sqs, queue_url: str, region: str, invoke: Invoke, cap: Callable[[], int]):
        self.m, self.sqs, self.url, self.region, self.invoke = mapping, sqs, queue_url, region, invoke
        self._stop = threading.Event()
        self.in_flight = 0
        self.batches = self.deleted = self.failed_items = 0
        workers = mapping.max_concurrency or max(1, min(DEFAULT_WORKERS, cap() or DEFAULT_WORKERS))
        self.fifo = mapping.source_arn.endswith(".fifo")
        if self.fifo:
            # One batch at a time keeps each message group's order whatever the endpoint does: moto's
            # long-polling ReceiveMessage hands out a group's next message while one is in flight.
            workers = 1
        self._ready: stdqueue.Queue[list[dict]] = stdqueue.Queue(maxsize=workers)
        self._deletes: stdqueue.Queue[list[dict]] = stdqueue.Queue()
        receivers = 1 if self.fifo else RECEIVERS
        self._threads = [threading.Thread(target=self._receive_loop, daemon=True, name=f"esm-{mapping.uuid[:8]}-r{i}")
                         for i in range(receivers)]
        self._threads += [threading.Thread(target=self._work_loop, daemon=True, name=f"esm-{mapping.uuid[:8]}-{i}")
                          for i in range(workers)]
        self._threads.append(threading.Thread(target=self._delete_loop, daemon=True, name=f"esm-{mapping.uuid[:8]}-d"))
        for th in self._threads:
            th.start()

    def stop(self) -> None:
        self._stop.set()

    def _receive_loop(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._receive()
                while batch and not self._stop.is_set():
                    try:
                        self._ready.put(batch, timeout=0.5)
                        batch = []
                    except stdqueue.Full:
                        continue
                if batch:
                    self._give_back(batch)   # disabled or deleted while this batch waited
            except Exception as e:   # the queue or the endpoint is gone for now: try again shortly
                log.warning("mapping %s: %s", self.m.uuid, e)
                self._stop.wait(1.0)

    def _work_loop(self) -> None:
        while True:
            try:
                batch = self._ready.get(timeout=0.5)
            except stdqueue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                if self._stop.is_set():
                    self._give_back(batch)
                else:
                    self._run(batch)
            except Exception as e:   # its messages come back after the visibility timeout
                log.warning("mapping %s: %s", self.m.uuid, e)

    def _delete_loop(self) -> None:
        while not (self._stop.is_set() and self._deletes.empty()):
            try:
                records = self._deletes.get(timeout=0.5)
            except stdqueue.Empty:
                continue
            try:
                self._delete_now(records)
            except Exception as e:   # not deleted: they come back and run again (at least once)
                log.warning("mapping %s: deleting %d messages failed: %s", self.m.uuid, len(records), e)

    def _receive(self) -> list[dict]:
        """Up to BatchSize messages, waiting up to the batching window to fill the batch."""
        batch: list[dict] = []
        deadline = time.monotonic() + self.m.window_s
        while len(batch) < self.m.batch_size and not self._stop.is_set():
            got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=min(10, self.m.batch_size - len(batch)),
                                           WaitTimeSeconds=RECEIVE_WAIT_S if not batch else 0,
                                           AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
            batch += got
            if not got and (batch or time.monotonic() >= deadline):
                break
            if time.monotonic() >= deadline and batch:
                break
        return batch

    def _run(self, batch: list[dict]) -> None:
        records = [sqs_record(m, self.m.source_arn, self.region) for m in batch]
        keep = [r for r in records if matches(self.m.filters, r)]
        self._delete([r for r in records if r not in keep])   # filtered out: AWS deletes them
        if not keep:
            return
        self.in_flight += 1
        try:
            failed, payload = self.invoke(self.m, json.dumps({"Records": keep}).encode())
        finally:
            self.in_flight -= 1
        self.batches += 1
        if failed:
            return   # the whole batch comes back after the visibility timeout (then the redrive policy)
        retry = self._reported_failures(payload, keep) if self.m.report_failures else set()
        self.failed_items += len(retry)
        self._delete([r for r in keep if r["messageId"] not in retry])

    @staticmethod
    def _reported_failures(payload: bytes, records: list[dict]) -> set[str]:
        """batchItemFailures' itemIdentifiers; a malformed answer fails the whole batch, as on AWS."""
        try:
            items = json.loads(payload).get("batchItemFailures") or []
            ids = {i["itemIdentifier"] for i in items}
        except (ValueError, AttributeError, KeyError, TypeError):
            return {r["messageId"] for r in records}
        known = {r["messageId"] for r in records}
        return ids & known if ids <= known else known

    def _give_back(self, batch: list[dict]) -> None:
        for i in range(0, len(batch), 10):
            self.sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for n, m in enumerate(batch[i:i + 10])])

    def _delete(self, records: list[dict]) -> None:
        if self.fifo:
            self._delete_now(records)   # before the group's next batch is received
        elif records:
            self._deletes.put(records)

    def _delete_now(self, records: list[dict]) -> None:
        for i in range(0, len(records), 10):
            chunk = records[i:i + 10]
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(n), "ReceiptHandle": r["receiptHandle"]} for n, r in enumerate(chunk)])
            self.deleted += len(chunk)

    def describe(self) -> dict:
        return {"uuid": self.m.uuid, "source": self.m.source_arn, "function": self.m.function,
                "state": "Enabled" if not self._stop.is_set() else "Disabled", "workers": len(self._threads),
                "in_flight_batches": self.in_flight, "batches": self.batches, "deleted": self.deleted,
                "failed_items": self.failed_items}


class SqsMappings:
    """The mappings the control plane holds, each enabled one polled (started, changed, stopped live)."""

    def __init__(self, sqs, region: str, invoke: Invoke, cap: Callable[[str], int]):
        self.sqs, self.region, self.invoke, self.cap = sqs, region, invoke, cap
        self._pollers: dict[str, tuple[Mapping, Poller]] = {}
        self._lock = threading.Lock()

    def update(self, mappings: list[Mapping]) -> None:
        wanted = {m.uuid: m for m in mappings if m.enabled and m.source_arn.split(":")[2] == "sqs"}
        with self._lock:
            for uuid, (m, poller) in list(self._pollers.items()):
                if wanted.get(uuid) != m:
                    poller.stop()
                    del self._pollers[uuid]
            for uuid, m in wanted.items():
                if uuid not in self._pollers:
                    parts = m.source_arn.split(":")
                    url = self.sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
                    self._pollers[uuid] = (m, Poller(m, self.sqs, url, self.region, self.invoke,
                                                     lambda name=m.function: self.cap(name)))

    def stop(self) -> None:
        with self._lock:
            for _, poller in self._pollers.values():
                poller.stop()
            self._pollers.clear()

    def describe(self) -> list[dict]:
        """Each polled mapping, with its queue's backlog (a status read, off every call's path)."""
        with self._lock:
            pollers = [p for _, p in self._pollers.values()]
        out = []
        for p in pollers:
            d = p.describe()
            try:
                attrs = self.sqs.get_queue_attributes(QueueUrl=p.url, AttributeNames=[
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
                d["backlog"] = int(attrs.get("ApproximateNumberOfMessages", 0))
                d["in_flight_messages"] = int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
            except Exception as e:   # the endpoint is restarting: say so, keep the rest
                d["backlog"] = f"unknown ({e})"
            out.append(d)
        return out
