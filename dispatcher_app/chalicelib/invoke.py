"""The call path, top to bottom: one Invoke call through the stages.

    authenticate -> authorize -> admit -> assign + execute -> record

`Invoker.invoke` returns a domain result (model.SyncResult, Accepted, DryRunPassed) or raises the
one error tree (errors.py); edge/answers.py turns either into Lambda's answer. Everything slow
(reading IAM, Secrets Manager, the Lambda control plane; writing usage and logs) happens in
background threads, so a warm call with a free slot makes no network round trip.

The Event path (accept, run when the pump hands it a slot, retry, expire, destinations) is
invoke_event.py; in cluster mode another dispatcher's queued RequestResponse call ends here
(`run_queued_sync`).
"""
from __future__ import annotations

import json
import logging
import threading

from chalicelib import authorize as authz
from chalicelib.admit import payloads
from chalicelib.admit.waiting import Slot
from chalicelib.authenticate import Identity, access_key_id, verify
from chalicelib.invoke_event import EventCalls
from chalicelib.errors import (AccessDenied, ClientGone, InvalidParameterValue, Mk1Error, ResourceNotFound,
                               ServiceUnavailable, SnapStartFailed, SnapStartTimeout, TooManyRequests,
                               UnrecognizedClient, ValidationError)
from chalicelib.model import DryRunPassed, FunctionConfig, Invocation, ResponseStream, SyncResult, log_stream_name
from chalicelib.record.usage import Execution, ran_record, unrun_record
from chalicelib.request import HttpRequest, InvokeRequest, at_once, new_request_id, parse_invoke
from chalicelib.validate import FunctionRef

log = logging.getLogger("mk1.invoke")

INVOKE_ACTION = "lambda:InvokeFunction"
TRIGGER_USER = "event-source-mapping"   # the usage records' user of calls a mapping made
RECORD_DURABLE_WAIT_S = 30.0


def account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else "000000000000"


class Invoker:
    """The call path over the parts the composition root (compose.py) built: `parts` gives the
    settings, clock, stores and writers, and each function's admission and pool."""

    def __init__(self, parts):
        self.p = parts
        self.events = EventCalls(self)   # the Event path (invoke_event.py)

    # -- one call --
    def invoke(self, req: HttpRequest, function_ref: str):
        request_id = new_request_id()
        try:
            identity = self.authenticate(req)
            inv = parse_invoke(req, function_ref)
            name, qualifier, invoked_arn = self.locate(inv, identity)
            self.authorize(identity, invoked_arn)        # before existence, as AWS: no probing by name
            config = self.p.registry.resolve(name, qualifier)
            if inv.invocation_type == "DryRun":
                return DryRunPassed(request_id)
            if inv.invocation_type == "Event":
                return self.events.accept(request_id, identity, config, inv, invoked_arn)
            return self.invoke_sync(request_id, identity, config, inv, invoked_arn, req.alive, req.later)
        except Mk1Error as e:
            e.request_id = request_id
            raise

    def invoke_stream(self, req: HttpRequest, function_ref: str, stream: ResponseStream):
        """InvokeWithResponseStream: a RequestResponse call whose answer goes to `stream` as the
        function writes it (https://docs.aws.amazon.com/lambda/latest/api/API_InvokeWithResponseStream.html)."""
        request_id = new_request_id()
        try:
            itype = req.headers.get("x-amz-invocation-type", "RequestResponse")
            if itype not in ("RequestResponse", "DryRun"):
                raise ValidationError(f"1 validation error detected: Value '{itype}' at 'invocationType' failed to "
                                      "satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]")
            identity = self.authenticate(req)
            inv = parse_invoke(req, function_ref)
            name, qualifier, invoked_arn = self.locate(inv, identity)
            self.authorize(identity, invoked_arn)
            config = self.p.registry.resolve(name, qualifier)
            if inv.invocation_type == "DryRun":
                return DryRunPassed(request_id)
            stream.put("start", {"version": config.version, "request_id": request_id})
            inv.stream = stream
            return self.invoke_sync(request_id, identity, config, inv, invoked_arn, req.alive, req.later)
        except Mk1Error as e:
            e.request_id = request_id
            raise

    def authenticate(self, req: HttpRequest) -> Identity:
        p = self.p
        try:
            return verify(req.method, req.raw_path, req.query, req.headers, req.body, p.keys)
        except UnrecognizedClient:
            akid = access_key_id(req.headers.get("authorization", ""))
        # A key created a moment ago (re-provisioned): read the keys once more (at a bounded rate,
        # KeyStore.refresh_for), then decide.
        try:
            if p.keys.refresh_for(akid):
                p.policies.refresh(p.keys.users())
        except Exception as e:
            log.warning("refreshing keys failed: %s", e)
        return verify(req.method, req.raw_path, req.query, req.headers, req.body, p.keys)

    def locate(self, inv: InvokeRequest, identity: Identity) -> tuple[str, str | None, str]:
        """(name, qualifier, the ARN as invoked). The qualifier in the name and the Qualifier parameter
        must agree; an ARN of another region or account is refused as AWS refuses it, never run here."""
        ref, registry = inv.function, self.p.registry
        if inv.qualifier and ref.qualifier and inv.qualifier != ref.qualifier:
            raise InvalidParameterValue("The derived qualifier from the function name does not match the "
                                        "specified qualifier.")
        if ref.region and ref.region != registry.region:
            raise ResourceNotFound(f"Functions from '{ref.region}' are not reachable in this region "
                                   f"('{registry.region}')")
        qualifier = inv.qualifier or ref.qualifier
        arn = registry.function_arn(ref.name, ref.account) + (f":{qualifier}" if qualifier else "")
        if ref.account and registry.account and ref.account != registry.account:
            raise AccessDenied(f"User: {self.user_arn(identity)} is not authorized to perform: {INVOKE_ACTION} "
                               f"on resource: {arn} because no resource-based policy allows the "
                               f"{INVOKE_ACTION} action")
        return ref.name, qualifier, arn

    def authorize(self, identity: Identity, resource: str, action: str = INVOKE_ACTION) -> None:
        """IAM decides on the ARN as invoked: a qualified call needs a grant of the qualified ARN."""
        decision = self.p.policies.decide(identity.user, action, resource)
        if decision is not authz.Decision.ALLOW:
            why = "an explicit deny in an identity-based policy" if decision is authz.Decision.DENY \
                else "no identity-based policy allows the " + action + " action"
            raise AccessDenied(f"User: {self.user_arn(identity)} is not authorized to perform: "
                               f"{action} on resource: {resource} because {why}")

    def user_arn(self, identity: Identity) -> str:
        return f"arn:aws:iam::{self.p.registry.account or '000000000000'}:user/{identity.user}"

    # -- RequestResponse --
    def invoke_sync(self, request_id: str, identity: Identity, config: FunctionConfig,
                    inv: InvokeRequest, invoked_arn: str, alive, later) -> SyncResult:
        p = self.p
        admission, pool = p.admission(config.name), p.pool(config.name)
        accepted = p.clock.time()
        packed: list[dict] = []

        def work() -> dict:
            """The call as a queue message, for cluster mode: any dispatcher may run it."""
            packed.append(payloads.pack(p.s3, inv.payload, request_id))
            return {"user": identity.user, "accepted_at": accepted, "payload": packed[0],
                    "tail_log": inv.tail_log, "reply_to": p.replies.url if p.replies else "",
                    "version": config.version, "invoked_arn": invoked_arn, "client_context": inv.client_context}
        invocation = _invocation(request_id, invoked_arn, inv.payload, inv.client_context)
        invocation.stream = inv.stream
        try:   # on_grant: the pool takes the call into a container as its slot is granted
            got = admission.acquire(request_id, alive=alive, work=work, no_wait=config.throttle == "aws",
                                    on_grant=lambda wake: pool.prepare(invocation, config, wake))
        except TooManyRequests as e:
            p.metrics.throttles.labels(config.name).inc()
            if e.after_wait:
                self.record_unrun(request_id, identity, config, "RequestResponse", "throttled", accepted)
            raise
        except ClientGone:
            self.record_unrun(request_id, identity, config, "RequestResponse", "cancelled", accepted)
            raise
        finally:
            for packed_payload in packed:
                payloads.discard(p.s3, packed_payload)
        if isinstance(got, SyncResult):
            return got       # run (and recorded) by the dispatcher that took its message
        with got as slot:
            run = self.execute(invocation, config, slot)
        # Its log lines and usage record once the answer is out: they change nothing in it.
        p.recorder.promise()
        later(lambda: self.record(request_id, identity, config, "RequestResponse", run, slot.wait_ms,
                                  slot.entered_at or accepted, promised=True, trigger=inv.trigger))
        if run.outcome.status == "restore_error":
            raise restore_error(run.outcome)
        return self.sync_result(request_id, run, slot, inv.tail_log)

    def execute(self, invocation: Invocation, config: FunctionConfig, slot: Slot | None = None) -> Execution:
        """slot: freed as soon as the function has answered (assign/pool.py answered()), not on return."""
        outcome, info = self.p.pool(config.name).run(invocation, config,
                                                     release=slot.release if slot is not None else None)
        if info.cold:
            self.p.metrics.cold_starts.labels(config.name).inc()
        return Execution(outcome, info, invocation.request_id, config.memory_mb, invocation.logs, config.version,
                         config.logging)

    def run_triggered(self, mapping, payload: bytes) -> tuple[bool, bytes]:
        """An event source mapping's batch: a synchronous call through the function's admission (the
        reserved concurrency is shared with direct callers), recorded with its trigger."""
        config = self.p.registry.resolve(mapping.function, mapping.qualifier)
        inv = InvokeRequest(FunctionRef(mapping.function, mapping.qualifier), None, "RequestResponse", False,
                            payload, trigger=mapping.arn)
        arn = config.arn + (f":{mapping.qualifier}" if mapping.qualifier else "")
        result = self.invoke_sync(new_request_id(), Identity(TRIGGER_USER, ""), config, inv, arn, lambda: True,
                                  at_once)
        return result.function_error, result.payload

    def queued_invocation(self, body: dict, config: FunctionConfig, payload: bytes) -> Invocation:
        return _queued_invocation(body, config, payload)

    def sync_result(self, request_id: str, run: Execution, slot: Slot, tail_log: bool) -> SyncResult:
        info = run.info
        ran = {"container": info.container_id, "cold": "true" if info.cold else "false",
               "duration-ms": f"{info.duration_ms:.3f}", "wait-ms": f"{slot.wait_ms:.3f}",
               "started-at": f"{info.started_at:.6f}", "dispatcher": self.p.instance_id[:16]}
        if info.init_ms is not None:
            ran["restore-ms" if info.restored else "init-ms"] = f"{info.init_ms:.3f}"
        return SyncResult(request_id, run.outcome.payload, run.outcome.is_error, ran,
                          run.log_lines if tail_log else None, run.version)

    # -- cluster mode: another dispatcher's queued RequestResponse call, run here --
    def run_queued_sync(self, body: dict, receipt: str, slot: Slot) -> None:
        p = self.p
        name, request_id = body["function"], body["request_id"]
        admission = p.admission(name)
        try:
            with slot:
                config = p.registry.version(name, body.get("version"))
                run = self.execute(_queued_invocation(body, config, payloads.unpack(p.s3, body["payload"])), config)
        except Exception as e:
            # Claimed here, so nobody else runs it: its caller gets the error, not silence.
            log.exception("queued sync call %s could not run here", request_id)
            err = e if isinstance(e, Mk1Error) else ServiceUnavailable(f"the call could not run: {e}")
            self._reply(body, err)
            admission.queue.delete_later(receipt)
            return
        recorded = threading.Event()
        self.record(request_id, Identity(body.get("user", "unknown"), ""), config, "RequestResponse", run,
                    slot.wait_ms, float(body.get("accepted_at", 0)), written=recorded)
        self._reply(body, self.sync_result(request_id, run, slot, bool(body.get("tail_log"))))
        payloads.discard(p.s3, body["payload"])
        if not recorded.wait(RECORD_DURABLE_WAIT_S):
            log.warning("queued sync %s: usage record not yet written", request_id)
        admission.queue.delete_later(receipt)   # its claim keeps a redelivery from running it again

    def _reply(self, body: dict, answer: SyncResult | Mk1Error) -> None:
        try:
            self.p.replies.send(body["reply_to"], body["function"], body["request_id"], answer)
        except Exception as e:   # the owner is gone: so is its caller
            log.warning("answer for %s could not reach its dispatcher: %s", body["request_id"], e)

    # -- record --
    def record(self, request_id: str, identity: Identity, config: FunctionConfig, itype: str,
               run: Execution, wait_ms: float, accepted: float, attempt: int = 0,
               written: threading.Event | None = None, promised: bool = False, trigger: str | None = None) -> None:
        """The run's log lines and usage record. accepted: when the dispatcher took the call in
        (epoch s; an async retry keeps the first)."""
        p, info, status = self.p, run.info, run.outcome.status
        record = ran_record(request_id, identity.user, config, itype, run, wait_ms, accepted, attempt, trigger)
        p.recorder.usage(record, written, promised)   # first: it settles a promise (promise())
        if info.container_id:
            p.recorder.log(config.log_group, log_stream_name(config.version, info.container_id), run.log_lines,
                           ts=info.started_at)
        p.metrics.invocations.labels(config.name, identity.user, status).inc()
        p.metrics.duration.labels(config.name).observe(info.duration_ms / 1000)
        p.metrics.wait.labels(config.name).observe(wait_ms / 1000)

    def record_unrun(self, request_id: str, identity: Identity, config: FunctionConfig, itype: str,
                     status: str, accepted: float, written: threading.Event | None = None) -> None:
        p = self.p
        p.recorder.usage(unrun_record(request_id, identity.user, config, itype, status, accepted,
                                      p.clock.time(), p.backend.name), written)
        p.metrics.invocations.labels(config.name, identity.user, status).inc()


def restore_error(outcome) -> Mk1Error:
    """A SnapStart restore that failed, as AWS answers it: SnapStartException or SnapStartTimeoutException."""
    try:
        message = json.loads(outcome.payload).get("errorMessage") or ""
    except ValueError:
        message = outcome.payload.decode("utf-8", "replace")
    return SnapStartTimeout(message) if outcome.error_type == "SnapStartTimeoutException" else SnapStartFailed(message)


def _invocation(request_id: str, invoked_arn: str, payload: bytes, client_context: str | None = None) -> Invocation:
    return Invocation(request_id, payload, invoked_arn, f"Root=1-{request_id[:8]}-{request_id[9:]}",
                      client_context=client_context)


def _queued_invocation(body: dict, config: FunctionConfig, payload: bytes) -> Invocation:
    return _invocation(body["request_id"], body.get("invoked_arn") or config.version_arn, payload,
                       body.get("client_context"))
