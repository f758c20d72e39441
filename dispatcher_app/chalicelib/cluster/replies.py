"""Cluster mode: answers travel back to the dispatcher holding the caller's connection.

Each dispatcher has a reply queue of its own (made at start, deleted at shutdown). A
dispatcher that ran another one's queued sync call sends its result (or error) there,
as plain data; a listener thread long-polls the queue and hands each answer to its waiting
caller. Bodies too large for a message go through S3 (payloads.py).
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Callable

from infra import names

from chalicelib.admit import payloads
from chalicelib.errors import Mk1Error
from chalicelib.model import SyncResult

log = logging.getLogger("mk1.replies")

RETENTION_S = 3600     # a reply queue left by a killed dispatcher empties itself


class Replies:
    def __init__(self, sqs, s3, instance_id: str, deliver: Callable[[str, str, SyncResult | Mk1Error], bool]):
        """deliver(function, request_id, result or error) -> False if no caller waits for it any more."""
        self.sqs, self.s3, self.deliver = sqs, s3, deliver
        self.url = sqs.create_queue(QueueName=names.reply_queue_name(instance_id),
                                    Attributes={"MessageRetentionPeriod": str(RETENTION_S)})["QueueUrl"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True, name="reply-listener")
        self._thread.start()

    def send(self, reply_to: str, function: str, request_id: str, answer: SyncResult | Mk1Error) -> None:
        body = {"function": function, "request_id": request_id}
        if isinstance(answer, Mk1Error):
            body["error"] = answer.as_data()
        else:
            body["result"] = answer.as_data(lambda data: payloads.pack(self.s3, data, f"reply-{request_id}"))
        self.sqs.send_message(QueueUrl=reply_to, MessageBody=json.dumps(body))

    def _read(self, r: dict) -> SyncResult | Mk1Error:
        if "error" in r:
            e = r["error"]
            return Mk1Error.rebuilt(int(e["status"]), e["code"], e["kind"], e["message"], e.get("extra") or {},
                                    e.get("message_key", "Message"), e.get("typed", True))
        result = SyncResult.from_data(r["request_id"], r["result"], lambda p: payloads.unpack(self.s3, p))
        payloads.discard(self.s3, r["result"]["payload"])
        return result

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                resp = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            except Exception as e:   # the endpoint restarting, or the queue deleted at shutdown
                if not self._stop.is_set():
                    log.warning("receiving replies failed: %s", e)
                    self._stop.wait(0.5)
                continue
            done = []
            for m in resp.get("Messages", []):
                try:
                    r = json.loads(m["Body"])
                    answer = self._read(r)
                    if not self.deliver(r["function"], r["request_id"], answer):
                        log.info("answer for %s arrived after its caller left", r["request_id"])
                except Exception:
                    log.exception("dropping a malformed reply")
                done.append({"Id": str(len(done)), "ReceiptHandle": m["ReceiptHandle"]})
            if done:
                try:
                    self.sqs.delete_message_batch(QueueUrl=self.url, Entries=done)
                except Exception as e:
                    log.warning("deleting replies failed (%s); they are delivered at most once anyway", e)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)
        try:
            self.sqs.delete_queue(QueueUrl=self.url)
        except Exception as e:
            log.warning("deleting the reply queue failed: %s", e)
