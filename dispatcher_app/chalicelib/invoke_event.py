"""The Event (asynchronous) path: accepted into the function's queue, run when the pump hands it a
slot, retried, expired or dead-lettered, its outcome sent to its destinations.

As AWS does it (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async.html and
invocation-async-retain-records.html): PutFunctionEventInvokeConfig's MaximumRetryAttempts (0-2)
and MaximumEventAgeInSeconds (60-21,600) govern the attempts; an event past its age is not run and
goes to the OnFailure destination and the DeadLetterConfig target with condition EventAgeExceeded;
after its last failed attempt with RetriesExhausted; a success to OnSuccess. mk1's own DLQ
(mk1-<function>-dlq) keeps every failed event as before.
"""
from __future__ import annotations

import logging
import threading

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.admit import payloads
from chalicelib.admit.waiting import Slot
from chalicelib.authenticate import Identity
from chalicelib.errors import ServiceUnavailable
from chalicelib.model import Accepted, FunctionConfig, Outcome
from chalicelib.record.destinations import invocation_record
from chalicelib.record.usage import Execution
from chalicelib.request import InvokeRequest, new_request_id

log = logging.getLogger("mk1.invoke")

RECORD_DURABLE_WAIT_S = 30.0


class EventCalls:
    def __init__(self, invoker):
        self.inv, self.p = invoker, invoker.p

    def accept(self, request_id: str, identity: Identity, config: FunctionConfig, inv: InvokeRequest | None,
               invoked_arn: str, payload: bytes | None = None) -> Accepted:
        p = self.p
        payload = inv.payload if inv is not None else payload
        body = {"request_id": request_id, "function": config.name, "user": identity.user, "attempt": 0,
                "accepted_at": p.clock.time(), "payload": payloads.pack(p.s3, payload, request_id),
                "version": config.version, "invoked_arn": invoked_arn}
        try:
            p.results.pending(request_id, config.name, identity.user)
        except (ClientError, BotoCoreError) as e:
            raise ServiceUnavailable(f"async calls need the AWS endpoint, which is not answering: {e}") from e
        if p.journal is not None:   # on disk before the 202: it survives the AWS endpoint's restart
            p.journal.accepted(body, payload)
        p.admission(config.name).enqueue_async(body)
        return Accepted(request_id)

    def replay_open_calls(self) -> int:
        """At start: the journal's calls that have not ended, sent again where their function's queue
        lost them (it came back empty: the AWS endpoint restarted); elsewhere they are still queued."""
        p = self.p
        if p.journal is None:
            return 0
        by_function: dict[str, list] = {}
        for call in p.journal.open_calls().values():
            by_function.setdefault(call.body["function"], []).append(call)
        sent = 0
        for name, calls in by_function.items():
            try:
                admission = p.admission(name)
                if sum(admission.queue.depth().values()) > 0:
                    continue   # its queue still holds them
                for call in sorted(calls, key=lambda c: float(c.body.get("accepted_at", 0))):
                    body = {k: v for k, v in call.body.items() if k not in ("kind", "owner")}
                    if int(body.get("attempt", 0)) in call.ran:
                        # It ran and failed, and the dispatcher died before queueing its retry: the
                        # next attempt (the run counts it against MaximumRetryAttempts as usual).
                        body["attempt"] = int(body.get("attempt", 0)) + 1
                    body["payload"] = payloads.pack(p.s3, call.payload, body["request_id"])
                    p.results.pending(body["request_id"], name, body.get("user", "unknown"))
                    admission.enqueue_async(body)
                    sent += 1
            except Exception as e:   # its function deleted, the endpoint not answering: next start
                log.warning("%d accepted Event calls of %s could not be queued again: %s", len(calls), name, e)
        if sent:
            log.info("queued %d accepted Event calls again (their queues came back empty)", sent)
        return sent

    def invoke_destination(self, arn: str, payload: bytes, user: str) -> None:
        """A Lambda destination: the function named by `arn` gets the record as an Event call, billed to
        the original caller."""
        parts = arn.split(":")
        config = self.p.registry.resolve(parts[6], parts[7] if len(parts) > 7 else None)
        self.accept(new_request_id(), Identity(user, ""), config, None, arn, payload)

    def run(self, body: dict, receipt: str, slot: Slot) -> None:
        """The pump handed a queued Event call a slot: run it (or expire it), record it, settle it."""
        name, request_id = body["function"], body["request_id"]
        admission = self.p.admission(name)
        journal = self.p.journal
        if journal is not None and journal.already_ran(request_id, int(body.get("attempt", 0))):
            # A redelivery of an attempt that ran (its message outlived the run): not run twice.
            slot.release()
            log.info("async %s attempt %s ran already: dropping its redelivery", request_id, body.get("attempt", 0))
            admission.queue.delete(receipt)
            return
        try:
            config = self.p.registry.version(name, body.get("version"))
            recorded = threading.Event()
            ran = self.p.clock.time() - float(body.get("accepted_at", 0)) <= config.events.max_age_s
            if not ran:
                slot.release()
                self._expire(body, config, recorded)
                ended = True
            else:
                with slot:
                    run = self.inv.execute(self.inv.queued_invocation(body, config, payloads.unpack(
                        self.p.s3, body["payload"])), config)
                self.inv.record(request_id, Identity(body.get("user", "unknown"), ""), config, "Event", run, 0.0,
                                float(body.get("accepted_at", 0)), attempt=body.get("attempt", 0), written=recorded)
                ended = self._settle(body, run, admission, config)
            # The message goes, and the journal says the call ended, only once its usage record is in
            # the table: a dispatcher dying in between makes SQS (or the journal, when the AWS endpoint
            # died too) deliver the call again (at least once, never lost). Ended first, a hard kill
            # within the record's batch lost its record for good.
            if not recorded.wait(RECORD_DURABLE_WAIT_S):
                log.warning("async %s: usage record not yet written; leaving its message for redelivery",
                            request_id)
                return
            if ran and journal is not None:
                journal.ran(request_id, int(body.get("attempt", 0)))
            if ended:
                self._ended(request_id)
            admission.queue.delete(receipt)
        except Exception:
            # The message stays in SQS and comes back after its visibility timeout: not lost.
            log.exception("async invocation %s could not be completed; SQS will redeliver it", request_id)

    def _settle(self, body: dict, run: Execution, admission, config: FunctionConfig) -> bool:
        """Its result, and a retry (with backoff), or its end: the DLQs and the destinations. True if
        the call ended (no retry follows); the caller tells the journal once its record is written."""
        p, request_id = self.p, body["request_id"]
        attempt = int(body.get("attempt", 0))
        retries = p.s.MK1_ASYNC_RETRIES if config.events.max_retries is None else config.events.max_retries
        if run.outcome.is_error and attempt < retries:
            delay = (p.s.MK1_ASYNC_RETRY_BACKOFF_MS / 1000) * (2 ** attempt)
            retry = {**body, "attempt": attempt + 1}
            if p.journal is not None:
                p.journal.accepted({k: v for k, v in retry.items() if k not in ("kind", "owner")}, self._event(body))
            admission.enqueue_async(retry, delay_s=max(1, round(delay)))
            p.results.update(request_id, "retrying", run.outcome, attempt + 1)
            return False
        elif run.outcome.is_error:
            admission.queue.to_dlq({**body, "error": run.outcome.payload.decode("utf-8", "replace"),
                                    "attempts": attempt + 1})
            p.results.update(request_id, "failed", run.outcome, attempt + 1)
            self._outcome(body, config, "RetriesExhausted", attempt + 1, run.outcome)
            return True
        else:
            p.results.update(request_id, "succeeded", run.outcome, attempt + 1)
            self._outcome(body, config, "Success", attempt + 1, run.outcome)
            payloads.discard(p.s3, body["payload"])
            return True

    def _ended(self, request_id: str) -> None:
        if self.p.journal is not None:
            self.p.journal.ended(request_id)

    def _expire(self, body: dict, config: FunctionConfig, recorded: threading.Event) -> None:
        """Past MaximumEventAgeInSeconds: not run; a record of it, and its failure destinations."""
        p, request_id = self.p, body["request_id"]
        accepted = float(body.get("accepted_at", 0))
        self.inv.record_unrun(request_id, Identity(body.get("user", "unknown"), ""), config, "Event", "expired",
                              accepted, written=recorded)
        outcome = Outcome("expired", b'{"errorMessage": "Event age exceeded", "errorType": "EventAgeExceeded"}',
                          "EventAgeExceeded")
        p.results.update(request_id, "expired", outcome, int(body.get("attempt", 0)))
        self._outcome(body, config, "EventAgeExceeded", int(body.get("attempt", 0)), None)

    def _outcome(self, body: dict, config: FunctionConfig, condition: str, attempts: int,
                 outcome: Outcome | None) -> None:
        events = config.events
        success = condition == "Success"
        target = events.on_success if success else events.on_failure
        if not success and events.dead_letter:
            self.p.destinations.dead_letter(events.dead_letter, body["request_id"], self._event(body), outcome, config)
        if target:
            record = invocation_record(body["request_id"], f"{config.arn}:{config.version}", condition, attempts,
                                       self._event(body),
                                       outcome, config.version, self.p.clock.time())
            self.p.destinations.deliver(target, record, success, config, body.get("user", "unknown"))

    def _event(self, body: dict) -> bytes:
        return payloads.unpack(self.p.s3, body["payload"])
