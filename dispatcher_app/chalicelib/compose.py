"""The dispatcher's front door: one call, top to bottom.

    authenticate -> authorize -> admit -> assign + execute -> record

Everything slow (reading IAM, Secrets Manager, the Lambda control plane; writing
usage and logs) happens in background threads, so a warm call with a free slot
makes no network round trip.
"""
from __future__ import annotations

import functools
import logging
import threading
import uuid
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from infra import aws, names
from my_mk1_homework import run_header
from my_mk1_homework.settings import Settings

from chalicelib import authorize as authz
from chalicelib.admit import payloads
from chalicelib.admit.admission import Admission, Slot
from chalicelib.assign.pool import FunctionPool
from chalicelib.authenticate import Identity, KeyStore, secrets_manager_loader, verify
from chalicelib.execute.backends import select_backend
from chalicelib.clock import SystemClock
from chalicelib.cluster.claims import Claims
from chalicelib.cluster.admission import ClusterAdmission
from chalicelib.cluster.leases import Leases
from chalicelib.execute.lambda_executor import LambdaExecutor
from chalicelib.errors import (AccessDenied, ClientGone, Mk1Error, ResourceNotFound, ServiceUnavailable,
                     TooManyRequests, UnrecognizedClient)
from chalicelib.control.registry import CodeStore, FunctionRegistry, function_name_from
from chalicelib.record.metrics import Metrics
from chalicelib.model import ExecInfo, FunctionConfig, Invocation, Outcome
from chalicelib.admit.queues import WorkQueue
from chalicelib.record.recorder import Recorder, billed_ms, iso, report_lines
from chalicelib.cluster.replies import Replies
from chalicelib.record.results import Results
from chalicelib.request import HttpRequest, HttpResponse, InvokeRequest, error_response, new_request_id, parse_invoke, tail

log = logging.getLogger("mk1.service")

INVOKE_ACTION = "lambda:InvokeFunction"
RECORD_DURABLE_WAIT_S = 30.0


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else "000000000000"


@dataclass
class Execution:
    outcome: Outcome
    info: ExecInfo
    request_id: str
    memory_size_mb: int
    function_logs: list[str]

    @functools.cached_property
    def log_lines(self) -> list[str]:
        """START, the function's lines, END, REPORT: made when first asked for, since REPORT
        reads the container's peak memory (after the answer, unless the answer carries them)."""
        info = self.info
        start, end, report = report_lines(self.request_id, info.duration_ms,
                                          billed_ms(info.duration_ms, info.init_ms), self.memory_size_mb,
                                          info.memory_mb(), info.init_ms)
        return [start, *self.function_logs, end, report]


class Dispatcher:
    def __init__(self, settings: Settings, *, backend=None, clock=None):
        self.s = settings
        self.clock = clock or SystemClock()
        c = lambda svc, **kw: aws.client(settings, svc, **kw)  # noqa: E731
        self.lam, self.sqs, self.s3 = c("lambda"), c("sqs"), c("s3")
        self.ddb, self.logs, self.iam = c("dynamodb"), c("logs"), c("iam")
        self.keys = KeyStore(secrets_manager_loader(c("secretsmanager"), names.USERS_SECRET))
        self.policies = authz.PolicyStore(self.iam)
        self.registry = FunctionRegistry(self.lam, self.clock)
        local = settings.embedded_aws or "127.0.0.1" in settings.aws_endpoint or "localhost" in settings.aws_endpoint
        self.code = CodeStore(self.lam, self.s3, settings.home / "code", local_endpoint=local)
        self.backend = backend or select_backend(settings)
        self.metrics = Metrics(self.describe_functions)
        # The writers in the background of every call (usage records, logs, the waiting calls' queue;
        # cluster leases, claims and replies) send plain-JSON requests of fixed shapes: the lean JSON
        # client sends them for ~1/3 of botocore's CPU, which takes the same GIL and the cores the
        # functions run on.
        writer_ddb = aws.json_client(settings, "dynamodb")
        self.recorder = Recorder(writer_ddb, aws.json_client(settings, "logs"), settings.usage_log,
                                 self.clock, settings.MK1_USAGE_BATCH_MS / 1000, self.metrics,
                                 logs_batch_s=settings.MK1_LOGS_BATCH_MS / 1000)
        self._queue_sqs = aws.json_client(settings, "sqs")
        self.results = Results(self.ddb, self.s3)
        self._pools: dict[str, FunctionPool] = {}
        self._admissions: dict[str, Admission] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.instance_id = uuid.uuid4().hex
        self.leases = Leases(writer_ddb, self.instance_id, settings.MK1_LEASE_MS / 1000, self.clock) \
            if settings.MK1_CLUSTER else None
        self.claims = Claims(writer_ddb, self.instance_id, self.clock) if self.leases else None
        self.replies: Replies | None = None     # cluster mode: made at start (it creates a queue)

    # -- lifecycle --
    def start(self) -> "Dispatcher":
        self.backend.prepare(progress=lambda msg: log.info("backend: %s", msg))
        removed = self.backend.cleanup_orphans()
        if removed:
            log.info("removed %d containers left by an earlier run", removed)
        self.refresh_control_plane()
        if self.leases:
            self.replies = Replies(self._queue_sqs, self.s3, self.instance_id, self._deliver_answer)
        for cfg in self.registry.all():
            self._admission(cfg.name)   # start each pump: picks up async calls queued before a restart
        for target, name in ((self._refresh_loop, "control-refresh"), (self._reap_loop, "reaper")):
            t = threading.Thread(target=target, daemon=True, name=name)
            t.start()
            self._threads.append(t)
        return self

    def refresh_control_plane(self) -> None:
        self.keys.refresh()
        self.policies.refresh(self.keys.users())
        self.registry.refresh()

    def _refresh_loop(self) -> None:
        every = self.s.MK1_CONTROL_REFRESH_MS / 1000
        while not self._stop.wait(every):
            try:
                self.refresh_control_plane()
            except Exception as e:   # AWS endpoint restarting: keep serving from what we know
                log.warning("control-plane refresh failed: %s", e)

    def _reap_loop(self) -> None:
        every = max(0.05, min(1.0, self.s.MK1_KEEPALIVE_MS / 4000))
        while not self._stop.wait(every):
            for pool in list(self._pools.values()):
                pool.reap()

    def shutdown(self, grace_s: float = 10.0) -> None:
        self._stop.set()
        for a in list(self._admissions.values()):
            a.stop()
        # Let running calls finish (bounded) before their containers go.
        deadline = self.clock.monotonic() + grace_s
        while any(a.in_use for a in self._admissions.values()) and self.clock.monotonic() < deadline:
            self._stop.wait(0.05)
        for p in list(self._pools.values()):
            p.shutdown()
        for a in list(self._admissions.values()):
            a.queue.flush()
        if self.leases:
            self.leases.stop()
        if self.replies:
            self.replies.close()
        self.recorder.drain()

    # -- per-function parts, made on first use --
    def _pool(self, name: str) -> FunctionPool:
        with self._lock:
            if name not in self._pools and self.s.MK1_EXECUTOR == "lambda":
                self._pools[name] = LambdaExecutor(name, self.s.MK1_EXECUTOR_ENDPOINT,  # type: ignore[assignment]
                                                   self.s.MK1_EXECUTOR_CREDENTIALS, self.s.region, self.clock)
            if name not in self._pools:
                self._pools[name] = FunctionPool(
                    name, self.backend, self.code.directory, self.s.home / "containers", clock=self.clock,
                    policy=self.s.MK1_PLACEMENT, keepalive_s=self.s.MK1_KEEPALIVE_MS / 1000,
                    start_timeout_s=self.s.MK1_START_TIMEOUT_MS / 1000,
                    init_backoff_s=self.s.MK1_INIT_BACKOFF_MS / 1000,
                    on_log=lambda fn, cid, line: self.recorder.log(fn, f"[$LATEST]{cid}", [line]))
            return self._pools[name]

    def _admission(self, name: str) -> Admission:
        with self._lock:
            if name not in self._admissions:
                url = self.sqs.get_queue_url(QueueName=names.queue_name(name))["QueueUrl"]
                dlq = self.sqs.get_queue_url(QueueName=names.dlq_name(name))["QueueUrl"]
                kind, extra = (ClusterAdmission, {
                    "leases": self.leases, "claims": self.claims, "run_sync": self._run_queued_sync,
                    "timeout_s": lambda: self.registry.get(name).timeout_s}) if self.leases else (Admission, {})
                self._admissions[name] = kind(
                    name, WorkQueue(self._queue_sqs, url, dlq, self.s.MK1_SQS_VISIBILITY_S), lambda: self._reserved(name),
                    clock=self.clock, max_depth=self.s.MK1_MAX_QUEUE_DEPTH,
                    max_wait_s=self.s.MK1_MAX_WAIT_MS / 1000, run_async=self._run_async,
                    instance_id=self.instance_id, **extra)
            return self._admissions[name]

    def _reserved(self, name: str) -> int | None:
        try:
            return self.registry.get(name).reserved
        except Mk1Error:
            return 0

    # -- the call path --
    def handle_invoke(self, req: HttpRequest, function_ref: str) -> HttpResponse:
        request_id = new_request_id()
        try:
            identity = self.authenticate(req)
            inv = parse_invoke(req, function_ref)
            config = self._resolve(inv)
            self.authorize(identity, config)
            if inv.invocation_type == "DryRun":
                return HttpResponse(204, b"", {"x-amzn-RequestId": request_id})
            if inv.invocation_type == "Event":
                return self._accept_async(request_id, identity, config, inv)
            return self._invoke_sync(request_id, identity, config, inv, req.alive, req.later)
        except Mk1Error as e:
            return error_response(e, request_id)

    def authenticate(self, req: HttpRequest) -> Identity:
        try:
            return verify(req.method, req.raw_path, req.query, req.headers, req.body, self.keys)
        except UnrecognizedClient:
            pass
        # A key created a moment ago (re-provisioned): read the keys once more, then decide.
        try:
            self.keys.refresh()
            self.policies.refresh(self.keys.users())
        except Exception as e:
            log.warning("refreshing keys failed: %s", e)
        return verify(req.method, req.raw_path, req.query, req.headers, req.body, self.keys)

    def _resolve(self, inv: InvokeRequest) -> FunctionConfig:
        name, arn_qualifier = function_name_from(inv.function_ref)
        qualifier = inv.qualifier or arn_qualifier
        config = self.registry.get(name)
        if qualifier not in (None, "$LATEST"):
            raise ResourceNotFound(f"Function not found: {config.arn}:{qualifier}")
        return config

    def authorize(self, identity: Identity, config: FunctionConfig, action: str = INVOKE_ACTION) -> None:
        decision = self.policies.decide(identity.user, action, config.arn)
        if decision is not authz.Decision.ALLOW:
            why = "an explicit deny in an identity-based policy" if decision is authz.Decision.DENY \
                else "no identity-based policy allows the " + action + " action"
            raise AccessDenied(f"User: {self.user_arn(identity.user, config)} is not authorized to perform: "
                               f"{action} on resource: {config.arn} because {why}")

    @staticmethod
    def user_arn(user: str, config: FunctionConfig) -> str:
        return f"arn:aws:iam::{_account_of(config.arn)}:user/{user}"

    def is_admin_reader(self, identity: Identity) -> bool:
        """May this user read everyone's usage (Scan on the usage table)?"""
        resource = f"arn:aws:dynamodb:{self.s.region}:{self._account()}:table/{names.USAGE_TABLE}"
        return self.policies.decide(identity.user, "dynamodb:Scan", resource) is authz.Decision.ALLOW

    def _account(self) -> str:
        functions = self.registry.all()
        return _account_of(functions[0].arn) if functions else _account_of("")

    def _invoke_sync(self, request_id: str, identity: Identity, config: FunctionConfig,
                     inv: InvokeRequest, alive, later) -> HttpResponse:
        admission = self._admission(config.name)
        accepted = self.clock.time()
        packed: list[dict] = []

        def work() -> dict:
            """The call as a queue message, for cluster mode: any dispatcher may run it."""
            packed.append(payloads.pack(self.s3, inv.payload, request_id))
            return {"user": identity.user, "accepted_at": accepted, "payload": packed[0],
                    "tail_log": inv.tail_log, "reply_to": self.replies.url if self.replies else ""}
        invocation = self._invocation(request_id, config, inv.payload)
        pool = self._pool(config.name)
        try:   # on_grant: the pool takes the call into a container as its slot is granted
            got = admission.acquire(request_id, alive=alive, work=work,
                                    on_grant=lambda wake: pool.prepare(invocation, config, wake))
        except TooManyRequests as e:
            self.metrics.throttles.labels(config.name).inc()
            if e.after_wait:
                self._record_unrun(request_id, identity, config, "RequestResponse", "throttled", accepted)
            raise
        except ClientGone:
            self._record_unrun(request_id, identity, config, "RequestResponse", "cancelled", accepted)
            return HttpResponse(499, b"")
        finally:
            for p in packed:
                payloads.discard(self.s3, p)
        if isinstance(got, HttpResponse):
            return got       # run (and recorded) by the dispatcher that took its message
        with got as slot:
            run = self._execute(invocation, config, slot)
        # Its log lines and usage record once the answer is out: they change nothing in it.
        self.recorder.promise()
        later(lambda: self._record(request_id, identity, config, "RequestResponse", run, slot.wait_ms,
                                   slot.entered_at or accepted, promised=True))
        return self._sync_answer(request_id, run, slot, inv.tail_log)

    @staticmethod
    def _invocation(request_id: str, config: FunctionConfig, payload: bytes) -> Invocation:
        return Invocation(request_id, payload, config.arn, f"Root=1-{request_id[:8]}-{request_id[9:]}")

    def _execute(self, invocation: Invocation, config: FunctionConfig, slot: Slot | None = None) -> Execution:
        """slot: freed as soon as the function has answered (assign.py answered()), not on return."""
        request_id = invocation.request_id
        outcome, info = self._pool(config.name).run(invocation, config,
                                                    release=slot.release if slot is not None else None)
        if info.cold:
            self.metrics.cold_starts.labels(config.name).inc()
        return Execution(outcome, info, request_id, config.memory_mb, invocation.logs)

    def _sync_answer(self, request_id: str, run: Execution, slot: Slot, tail_log: bool) -> HttpResponse:
        info = run.info
        ran = {"container": info.container_id, "cold": "true" if info.cold else "false",
               "duration-ms": f"{info.duration_ms:.3f}", "wait-ms": f"{slot.wait_ms:.3f}",
               "started-at": f"{info.started_at:.6f}", "dispatcher": self.instance_id[:16]}
        if info.init_ms is not None:
            ran["init-ms"] = f"{info.init_ms:.3f}"
        headers = {"x-amzn-RequestId": request_id, "X-Amz-Executed-Version": "$LATEST",
                   "Content-Type": "application/json", run_header.NAME: run_header.format_run(ran)}
        if run.outcome.is_error:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if tail_log:
            headers["X-Amz-Log-Result"] = tail(run.log_lines)
        return HttpResponse(200, run.outcome.payload, headers)

    # -- async (Event) --
    def _accept_async(self, request_id: str, identity: Identity, config: FunctionConfig,
                      inv: InvokeRequest) -> HttpResponse:
        body = {"request_id": request_id, "function": config.name, "user": identity.user, "attempt": 0,
                "accepted_at": self.clock.time(), "payload": payloads.pack(self.s3, inv.payload, request_id)}
        try:
            self.results.pending(request_id, config.name, identity.user)
        except (ClientError, BotoCoreError) as e:
            raise ServiceUnavailable(f"async calls need the AWS endpoint, which is not answering: {e}") from e
        self._admission(config.name).enqueue_async(body)
        return HttpResponse(202, b"", {"x-amzn-RequestId": request_id})

    def _run_async(self, body: dict, receipt: str, slot: Slot) -> None:
        name, request_id = body["function"], body["request_id"]
        identity = Identity(body.get("user", "unknown"), "")
        admission = self._admission(name)
        try:
            with slot:
                config = self.registry.get(name)
                run = self._execute(self._invocation(request_id, config, payloads.unpack(
                    self.s3, body["payload"])), config)
            recorded = threading.Event()
            self._record(request_id, identity, config, "Event", run, 0.0, float(body.get("accepted_at", 0)),
                         attempt=body.get("attempt", 0), written=recorded)
            attempt = int(body.get("attempt", 0))
            if run.outcome.is_error and attempt < self.s.MK1_ASYNC_RETRIES:
                delay = (self.s.MK1_ASYNC_RETRY_BACKOFF_MS / 1000) * (2 ** attempt)
                admission.enqueue_async({**body, "attempt": attempt + 1}, delay_s=max(1, round(delay)))
                self.results.update(request_id, "retrying", run.outcome, attempt + 1)
            elif run.outcome.is_error:
                admission.queue.to_dlq({**body, "error": run.outcome.payload.decode("utf-8", "replace"),
                                        "attempts": attempt + 1})
                self.results.update(request_id, "failed", run.outcome, attempt + 1)
            else:
                self.results.update(request_id, "succeeded", run.outcome, attempt + 1)
                payloads.discard(self.s3, body["payload"])
            # The message goes only once the call's usage record is in the table: a dispatcher
            # dying in between makes SQS deliver the call again (at least once, never lost).
            if not recorded.wait(RECORD_DURABLE_WAIT_S):
                log.warning("async %s: usage record not yet written; leaving its message for redelivery",
                            request_id)
                return
            admission.queue.delete(receipt)
        except Exception:
            # The message stays in SQS and comes back after its visibility timeout: not lost.
            log.exception("async invocation %s could not be completed; SQS will redeliver it", request_id)

    # -- cluster mode: another dispatcher's queued sync call, run here --
    def _run_queued_sync(self, body: dict, receipt: str, slot: Slot) -> None:
        name, request_id = body["function"], body["request_id"]
        admission = self._admission(name)
        try:
            with slot:
                config = self.registry.get(name)
                run = self._execute(self._invocation(request_id, config, payloads.unpack(
                    self.s3, body["payload"])), config)
        except Exception as e:
            # Claimed here, so nobody else runs it: its caller gets the error, not silence.
            log.exception("queued sync call %s could not run here", request_id)
            err = e if isinstance(e, Mk1Error) else ServiceUnavailable(f"the call could not run: {e}")
            self._reply(body, error_response(err, request_id))
            admission.queue.delete_later(receipt)
            return
        recorded = threading.Event()
        self._record(request_id, Identity(body.get("user", "unknown"), ""), config, "RequestResponse", run,
                     slot.wait_ms, float(body.get("accepted_at", 0)), written=recorded)
        self._reply(body, self._sync_answer(request_id, run, slot, bool(body.get("tail_log"))))
        payloads.discard(self.s3, body["payload"])
        if not recorded.wait(RECORD_DURABLE_WAIT_S):
            log.warning("queued sync %s: usage record not yet written", request_id)
        admission.queue.delete_later(receipt)   # its claim keeps a redelivery from running it again

    def _reply(self, body: dict, answer: HttpResponse) -> None:
        try:
            self.replies.send(body["reply_to"], body["function"], body["request_id"], answer)  # type: ignore[union-attr]
        except Exception as e:   # the owner is gone: so is its caller
            log.warning("answer for %s could not reach its dispatcher: %s", body["request_id"], e)

    def _deliver_answer(self, function: str, request_id: str, answer: HttpResponse) -> bool:
        admission = self._admissions.get(function)
        return isinstance(admission, ClusterAdmission) and admission.answer(request_id, answer)

    # -- usage --
    def _record(self, request_id: str, identity: Identity, config: FunctionConfig, itype: str,
                run: Execution, wait_ms: float, accepted: float, attempt: int = 0,
                written: threading.Event | None = None, promised: bool = False) -> None:
        """The run's log lines and usage record. accepted: when the dispatcher took the call in
        (epoch s; an async retry keeps the first)."""
        info, status = run.info, run.outcome.status
        peak_mb = info.memory_mb()
        record = {"request_id": request_id, "user": identity.user, "function": config.name,
                  "invocation_type": itype, "accepted": iso(accepted or info.started_at),
                  "start": iso(info.started_at), "end": iso(info.ended_at),
                  "duration_ms": round(info.duration_ms, 3), "billed_ms": billed_ms(info.duration_ms, info.init_ms),
                  "init_ms": None if info.init_ms is None else round(info.init_ms, 3),
                  "wait_ms": round(wait_ms, 3), "memory_mb": config.memory_mb,
                  "max_memory_used_mb": None if peak_mb is None else round(peak_mb, 1),
                  "status": status, "error_type": run.outcome.error_type, "container_id": info.container_id,
                  "backend": info.backend, "attempt": attempt}
        self.recorder.usage(record, written, promised)   # first: it settles a promise (promise())
        if info.container_id:
            self.recorder.log(config.name, f"[$LATEST]{info.container_id}", run.log_lines, ts=info.started_at)
        self.metrics.invocations.labels(config.name, identity.user, status).inc()
        self.metrics.duration.labels(config.name).observe(info.duration_ms / 1000)
        self.metrics.wait.labels(config.name).observe(wait_ms / 1000)

    def _record_unrun(self, request_id: str, identity: Identity, config: FunctionConfig, itype: str,
                      status: str, accepted: float) -> None:
        now = self.clock.time()
        record = {"request_id": request_id, "user": identity.user, "function": config.name,
                  "invocation_type": itype, "accepted": iso(accepted), "start": iso(now), "end": iso(now),
                  "duration_ms": 0.0,
                  "billed_ms": 0, "init_ms": None, "wait_ms": round((now - accepted) * 1000, 3),
                  "memory_mb": config.memory_mb, "max_memory_used_mb": None, "status": status,
                  "error_type": None, "container_id": "", "backend": self.backend.name, "attempt": 0}
        self.recorder.usage(record)
        self.metrics.invocations.labels(config.name, identity.user, status).inc()

    # -- visibility --
    def describe_functions(self) -> dict:
        out = {}
        for cfg in self.registry.all():
            adm = self._admissions.get(cfg.name)
            pool = self._pools.get(cfg.name)
            out[cfg.name] = {
                "arn": cfg.arn, "code_sha256": cfg.code_sha, "memory_mb": cfg.memory_mb,
                "timeout_s": cfg.timeout_s, "reserved_concurrency": cfg.reserved,
                **(adm.describe() if adm else {"in_use": 0, "waiting": 0}),
                "containers": pool.describe() if pool else [],
                "cold_starts": pool.cold_starts if pool else 0,
            }
        return out

    def status(self) -> dict:
        return {"backend": self.backend.name, "executor": self.s.MK1_EXECUTOR, "placement": self.s.MK1_PLACEMENT,
                "cluster": bool(self.leases), "instance": self.instance_id,
                "keepalive_ms": self.s.MK1_KEEPALIVE_MS, "aws_endpoint": self.s.aws_endpoint,
                "functions": self.describe_functions(), "recorder": self.recorder.health()}

    def queue_depths(self) -> dict:
        out = {}
        for name, adm in list(self._admissions.items()):
            try:
                out[name] = adm.queue.depth()
            except (ClientError, BotoCoreError) as e:
                out[name] = {"error": str(e)}
        return out
