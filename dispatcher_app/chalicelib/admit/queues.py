"""A function's SQS queue (the queue of record for waiting calls) and its DLQ."""
from __future__ import annotations

import json
import logging
import queue as stdqueue
import threading
import time
from typing import Callable

log = logging.getLogger("mk1.queues")

# A received message stays invisible while we own it: we receive it for a short time and a
# heartbeat keeps extending that while it waits for a slot or runs. If this dispatcher dies,
# its messages reappear within MK1_SQS_VISIBILITY_S for another (or the restarted) one.
DEFAULT_VISIBILITY_S = 30
# Each SQS request costs the endpoint and the dispatcher far more than a message in it (moto ~2 ms
# of CPU, boto3 ~1 ms, on the 2 cores the functions run on): gather sends. Briefly while a free
# slot may soon lack a message to hand it (hurry()); longer while the messages already received
# cover the next free slots, so a queued call does not wait on the gathering; a batch that lingers
# so is cut short as soon as they no longer do (nudge()). A delete is off every caller's path.
SEND_LINGER_S = 0.005
SEND_LINGER_COVERED_S = 0.1
DELETE_LINGER_S = 0.2
_NUDGE = object()


class WorkQueue:
    def __init__(self, sqs, queue_url: str, dlq_url: str, visibility_s: int = DEFAULT_VISIBILITY_S):
        self.sqs, self.url, self.dlq_url = sqs, queue_url, dlq_url
        self.visibility_s = max(2, visibility_s)
        self.hurry: Callable[[], bool] = lambda: True   # set by the admission that owns this queue
        self._deletes: stdqueue.Queue[str | None] = stdqueue.Queue()
        self._owned: set[str] = set()
        self._owned_lock = threading.Lock()
        self._stopped = threading.Event()
        self._deleter = threading.Thread(target=self._delete_loop, daemon=True, name="sqs-deleter")
        self._deleter.start()
        self._sends: stdqueue.Queue = stdqueue.Queue()    # (body, on_fail) or _NUDGE
        self._lingering = False                          # the sender holds a batch for SEND_LINGER_COVERED_S
        threading.Thread(target=self._send_loop, daemon=True, name="sqs-sender").start()
        threading.Thread(target=self._heartbeat_loop, daemon=True, name="sqs-heartbeat").start()

    def send(self, body: dict, delay_s: int = 0) -> str:
        kw = {"DelaySeconds": min(max(int(delay_s), 0), 900)} if delay_s else {}
        return self.sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(body), **kw)["MessageId"]

    def send_ordered(self, body: dict, on_fail) -> None:
        """Queue a message for the sender thread: messages reach SQS in the order of these calls
        (concurrent send_message calls would race each other), ten to a batch under load."""
        self._sends.put((body, on_fail))

    def nudge(self) -> None:
        """The received messages no longer cover the free slots: send what lingers now."""
        if self._lingering:
            self._sends.put(_NUDGE)

    def _send_loop(self) -> None:
        while True:
            first = self._sends.get()
            if first is _NUDGE:
                continue
            batch = [first]
            start = time.monotonic()
            self._lingering = not self.hurry()
            deadline = start + (SEND_LINGER_COVERED_S if self._lingering else SEND_LINGER_S)
            while len(batch) < 10:
                try:
                    item = self._sends.get(timeout=max(0.0, deadline - time.monotonic()))
                except stdqueue.Empty:
                    break
                if item is _NUDGE:
                    if self.hurry():
                        self._lingering = False
                        deadline = min(deadline, start + SEND_LINGER_S)
                    continue
                batch.append(item)
            self._lingering = False
            entries = [{"Id": str(i), "MessageBody": json.dumps(body)} for i, (body, _) in enumerate(batch)]
            try:
                failed = self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries).get("Failed", [])
            except Exception as e:
                for _, on_fail in batch:
                    on_fail(e)
                continue
            for f in failed:
                batch[int(f["Id"])][1](RuntimeError(f.get("Message", f.get("Code", "send failed"))))

    def receive(self, max_messages: int, wait_s: int) -> list[tuple[dict, str]]:
        resp = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=max(1, min(max_messages, 10)),
                                        WaitTimeSeconds=wait_s, VisibilityTimeout=self.visibility_s,
                                        AttributeNames=["ApproximateReceiveCount"])
        out = []
        for m in resp.get("Messages", []):
            with self._owned_lock:
                self._owned.add(m["ReceiptHandle"])
            try:
                out.append((json.loads(m["Body"]), m["ReceiptHandle"]))
            except ValueError:
                log.error("dropping a malformed message from %s", self.url)
                self.delete_later(m["ReceiptHandle"])
        return out

    def delete(self, receipt: str) -> None:
        self._disown(receipt)
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt)

    def delete_later(self, receipt: str) -> None:
        """Off the caller's path: a dispatched sync call's message is deleted in the background."""
        self._disown(receipt)
        self._deletes.put(receipt)

    def give_back(self, receipt: str) -> None:
        """Make a message visible again at once (it is another dispatcher's to take)."""
        self._disown(receipt)
        try:
            self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=0)
        except Exception as e:
            log.warning("giving a message back failed (%s); it reappears after its timeout", e)

    def _disown(self, receipt: str) -> None:
        with self._owned_lock:
            self._owned.discard(receipt)

    def _heartbeat_loop(self) -> None:
        while not self._stopped.wait(self.visibility_s / 3):
            with self._owned_lock:
                owned = list(self._owned)
            for i in range(0, len(owned), 10):
                entries = [{"Id": str(j), "ReceiptHandle": r, "VisibilityTimeout": self.visibility_s}
                           for j, r in enumerate(owned[i:i + 10])]
                try:
                    self.sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
                except Exception as e:  # the endpoint may be restarting; the next beat retries
                    log.warning("extending visibility of %d messages failed: %s", len(entries), e)

    def _delete_loop(self) -> None:
        while True:
            first = self._deletes.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + DELETE_LINGER_S
            while len(batch) < 10:
                try:
                    nxt = self._deletes.get(timeout=max(0.0, deadline - time.monotonic()))
                except stdqueue.Empty:
                    break
                if nxt is None:
                    self._deletes.put(None)
                    break
                batch.append(nxt)
            entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(batch)]
            for attempt in range(5):
                try:
                    self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
                    break
                except Exception as e:  # the AWS endpoint may be restarting
                    log.warning("deleting %d messages failed (%s); retrying", len(batch), e)
                    threading.Event().wait(0.2 * (attempt + 1))

    def flush(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._deletes.put(None)
        self._deleter.join(timeout)

    def to_dlq(self, body: dict) -> None:
        self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=json.dumps(body))

    def depth(self) -> dict:
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return {k.replace("ApproximateNumberOfMessages", "") or "visible": int(v) for k, v in attrs.items()}
