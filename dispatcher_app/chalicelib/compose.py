"""The composition root: builds the dispatcher's parts, starts and stops them.

Nothing here is on a call's path: `Dispatcher` makes the AWS clients, stores, writers and
each function's admission and pool (on first use), and hands them to the call path
(invoke.py) and the read side (queries.py). Cluster mode differs only in what is built here:
a lease-backed slot source (cluster/slots.py) for each admission instead of local counting, claims and a reply queue.
"""
from __future__ import annotations

import logging
import threading
import uuid

from infra import aws, names
from infra.provision import ensure_queues
from my_mk1_homework.settings import Settings

from chalicelib import authorize as authz
from chalicelib.admit.admission import Admission
from chalicelib.admit.local_slots import LocalSlots
from chalicelib.admit.queues import WorkQueue
from chalicelib.assign.pool import FunctionPool
from chalicelib.authenticate import KeyStore, secrets_manager_loader
from chalicelib.clock import SystemClock
from chalicelib.cluster.claims import Claims
from chalicelib.cluster.leases import Leases
from chalicelib.cluster.replies import Replies
from chalicelib.cluster.slots import ClusterSlots
from chalicelib.control.code import CodeStore
from chalicelib.control.registry import FunctionRegistry
from chalicelib.errors import Mk1Error
from chalicelib.execute.backends import select_backend
from chalicelib.execute.lambda_executor import LambdaExecutor
from chalicelib.invoke import Invoker
from chalicelib.queries import Queries
from chalicelib.record.destinations import Destinations
from chalicelib.record.metrics import Metrics
from chalicelib.record.recorder import Recorder
from chalicelib.record.results import Results
from chalicelib.admit.journal import CallJournal
from chalicelib.invoke_url import FunctionUrls
from chalicelib.triggers.sqs import SqsMappings

log = logging.getLogger("mk1.compose")


class Dispatcher:
    def __init__(self, settings: Settings, *, backend=None, clock=None):
        self.s = settings
        self.clock = clock or SystemClock()
        c = lambda svc, **kw: aws.client(settings, svc, **kw)  # noqa: E731
        self.lam, self.sqs, self.s3 = c("lambda"), c("sqs"), c("s3")
        self.ddb, self.logs, self.iam = c("dynamodb"), c("logs"), c("iam")
        self.keys = KeyStore(secrets_manager_loader(c("secretsmanager"), names.USERS_SECRET))
        self.policies = authz.PolicyStore(self.iam)
        self.registry = FunctionRegistry(self.lam, self.clock, settings.region)
        local = settings.embedded_aws or "127.0.0.1" in settings.aws_endpoint or "localhost" in settings.aws_endpoint
        self.code = CodeStore(self.lam, self.s3, settings.home / "code", local_endpoint=local)
        self.backend = backend or select_backend(settings)
        self.queries = Queries(self)
        self.metrics = Metrics(self.queries.describe_functions)
        # The writers in the background of every call (usage records, logs, the waiting calls' queue;
        # cluster leases, claims and replies) send plain-JSON requests of fixed shapes: the lean JSON
        # client sends them for ~1/3 of botocore's CPU, which takes the same GIL and the cores the
        # functions run on.
        writer_ddb = aws.json_client(settings, "dynamodb")
        self.recorder = Recorder(writer_ddb, aws.json_client(settings, "logs"), settings.usage_log,
                                 self.clock, settings.MK1_USAGE_BATCH_MS / 1000, self.metrics,
                                 logs_batch_s=settings.MK1_LOGS_BATCH_MS / 1000)
        self._queue_sqs = aws.json_client(settings, "sqs")
        self.results = Results(self.ddb, self.s3,
                               None if settings.MK1_CLUSTER else settings.home / "async-results.jsonl")
        self.pools: dict[str, FunctionPool] = {}
        self.admissions: dict[str, Admission] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.instance_id = uuid.uuid4().hex
        self.leases = Leases(writer_ddb, self.instance_id, settings.MK1_LEASE_MS / 1000, self.clock) \
            if settings.MK1_CLUSTER else None
        self.claims = Claims(writer_ddb, self.instance_id, self.clock) if self.leases else None
        self.replies: Replies | None = None     # cluster mode: made at start (it creates a queue)
        # Accepted Event calls on disk until they end (admit/journal.py); one process per MK1_HOME:
        # cluster mode's dispatchers share their queues instead.
        self.journal = None if settings.MK1_CLUSTER else CallJournal(settings.home / "accepted-calls.jsonl",
                                                                     settings.usage_log)
        self.invoker = Invoker(self)
        self.urls = FunctionUrls(self.invoker)
        self.mappings = SqsMappings(aws.json_client(settings, "sqs"), settings.region, self.invoker.run_triggered,
                                    self._reserved)
        self.destinations = Destinations(self.sqs, c("sns"), c("events"), self.invoker.events.invoke_destination)

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
            self.admission(cfg.name)   # start each pump: picks up async calls queued before a restart
        self.invoker.events.replay_open_calls()   # and those the AWS endpoint lost meanwhile
        for target, name in ((self._refresh_loop, "control-refresh"), (self._reap_loop, "reaper")):
            t = threading.Thread(target=target, daemon=True, name=name)
            t.start()
            self._threads.append(t)
        return self

    def refresh_control_plane(self) -> None:
        self.keys.refresh()
        self.policies.refresh(self.keys.users())
        for name in [*self.registry.refresh(), *self.registry.take_gone()]:
            self._retire(name)
        if not self._stop.is_set():
            self.mappings.update(self.registry.mappings)
            self._snapshots()

    def _snapshots(self) -> None:
        """SnapStart: a version published with it gets its snapshot now (its init runs once, as at
        AWS's publish), not at its first call; snapshots of versions gone or changed are stopped."""
        if not hasattr(self.backend, "snapshots") or self.s.MK1_EXECUTOR == "lambda":
            return
        wanted: set[tuple] = set()
        for latest in self.registry.all():
            for config in self.registry.versions(latest.name):
                if config.snap_start or (self.s.MK1_SNAPSTART_LATEST and config.version == "$LATEST"):
                    pool = self.pool(config.name)
                    key = pool.snapshot_key(config)
                    wanted.add(key)   # type: ignore[arg-type]
                    pool.prepare_snapshot(config)
        self.backend.snapshots.retire(lambda key: key in wanted)

    def _retire(self, name: str) -> None:
        """A deleted function: its calls now answer ResourceNotFoundException; its pump and
        containers stop (a call still running finishes first, within the pool's stop)."""
        with self._lock:
            admission, pool = self.admissions.pop(name, None), self.pools.pop(name, None)
        log.info("%s was deleted: stopping its containers", name)
        if admission is not None:
            admission.stop()
        if pool is not None:
            threading.Thread(target=pool.shutdown, daemon=True, name=f"retire-{name}").start()

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
            for pool in list(self.pools.values()):
                pool.reap()

    def shutdown(self, grace_s: float = 10.0) -> None:
        self._stop.set()
        self.mappings.stop()
        for a in list(self.admissions.values()):
            a.stop()
        # Let running calls finish (bounded) before their containers go.
        deadline = self.clock.monotonic() + grace_s
        while any(a.in_use for a in self.admissions.values()) and self.clock.monotonic() < deadline:
            self._stop.wait(0.05)
        for p in list(self.pools.values()):
            p.shutdown()
        if hasattr(self.backend, "snapshots"):
            self.backend.snapshots.stop_all()
        for a in list(self.admissions.values()):
            a.queue.flush()
        if self.leases:
            self.leases.stop()
        if self.replies:
            self.replies.close()
        self.recorder.drain()
        if self.journal is not None:
            self.journal.close()

    # -- per-function parts, made on first use --
    def pool(self, name: str) -> FunctionPool:
        with self._lock:
            if name not in self.pools and self.s.MK1_EXECUTOR == "lambda":
                self.pools[name] = LambdaExecutor(name, self.s.MK1_EXECUTOR_ENDPOINT,  # type: ignore[assignment]
                                                  self.s.MK1_EXECUTOR_CREDENTIALS, self.s.region, self.clock)
            if name not in self.pools:
                self.pools[name] = FunctionPool(
                    name, self.backend, self.code.directory, self.s.home / "containers", clock=self.clock,
                    policy=self.s.MK1_PLACEMENT, keepalive_s=self.s.MK1_KEEPALIVE_MS / 1000,
                    start_timeout_s=self.s.MK1_START_TIMEOUT_MS / 1000,
                    init_backoff_s=self.s.MK1_INIT_BACKOFF_MS / 1000,
                    on_log=lambda fn, stream, line: self.recorder.log(self._log_group(fn), stream, [line]),
                    restore_latest=self.s.MK1_SNAPSTART_LATEST)
            return self.pools[name]

    def admission(self, name: str) -> Admission:
        with self._lock:
            if name not in self.admissions:
                url, dlq = self._queues(name)
                slots = ClusterSlots(self.leases, self.claims, self.invoker.run_queued_sync,
                                     lambda: self.registry.get(name).timeout_s) if self.leases else LocalSlots()
                self.admissions[name] = Admission(
                    name, WorkQueue(self._queue_sqs, url, dlq, self.s.MK1_SQS_VISIBILITY_S),
                    lambda: self._reserved(name), slots, clock=self.clock, max_depth=self.s.MK1_MAX_QUEUE_DEPTH,
                    max_wait_s=self.s.MK1_MAX_WAIT_MS / 1000, run_async=self.invoker.events.run,
                    instance_id=self.instance_id)
            return self.admissions[name]

    def _queues(self, name: str) -> tuple[str, str]:
        """The function's queue pair; a function deployed with the Lambda API alone (not by mk1's
        provisioning) gets its pair made here, on its first call."""
        try:
            return (self.sqs.get_queue_url(QueueName=names.queue_name(name))["QueueUrl"],
                    self.sqs.get_queue_url(QueueName=names.dlq_name(name))["QueueUrl"])
        except self.sqs.exceptions.QueueDoesNotExist:
            log.info("%s: making its SQS queue pair", name)
            return ensure_queues(self.sqs, name)

    def _log_group(self, name: str) -> str:
        try:
            return self.registry.get(name).log_group
        except Mk1Error:
            return names.log_group(name)

    def _reserved(self, name: str) -> int | None:
        try:
            return self.registry.get(name).reserved
        except Mk1Error:
            return 0

    def _deliver_answer(self, function: str, request_id: str, answer) -> bool:
        admission = self.admissions.get(function)
        return admission is not None and isinstance(admission.slots, ClusterSlots) and \
            admission.slots.answer(request_id, answer)
