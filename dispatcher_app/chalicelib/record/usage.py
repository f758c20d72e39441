"""What one execution leaves behind: its usage record and its START/END/REPORT lines.

One builder (`usage_record`) makes every record, for calls that ran and for calls that ended
without running (throttled after waiting, caller gone), so the two kinds never drift apart.
The records' fields are the usage log's contract (DESIGN.md); the writer is recorder.py.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from infra import names

from chalicelib.model import TEXT_LOGS, ExecInfo, FunctionConfig, LogSettings, Outcome

_ser, _deser = TypeSerializer(), TypeDeserializer()


@dataclass
class Execution:
    """One run of a call in a container: how it ended, how it ran, and what it printed."""
    outcome: Outcome
    info: ExecInfo
    request_id: str
    memory_size_mb: int
    function_logs: list[str]
    version: str = "$LATEST"
    logging: LogSettings = TEXT_LOGS

    @functools.cached_property
    def log_lines(self) -> list[str]:
        """START, the function's lines, END, REPORT (JSON mode: platform.start, platform.runtimeDone,
        platform.report, filtered at the system log level): made when first asked for, since REPORT
        reads the container's peak memory (after the answer, unless the answer carries them)."""
        info = self.info
        billed = billed_ms(info.duration_ms, info.init_ms)
        if self.logging.format == "JSON":
            start, done, report = json_platform_lines(self, billed)
            level = SYSTEM_LEVELS.get(self.logging.system_level or "INFO", 1)
            return [*([start] if level <= 1 else []), *self.function_logs, *([done] if level <= 0 else []),
                    *([report] if level <= 1 else [])]
        start, end, report = report_lines(self.request_id, info.duration_ms, billed, self.memory_size_mb,
                                          info.memory_mb(), info.init_ms, self.version, info.restored)
        return [start, *self.function_logs, end, report]


SYSTEM_LEVELS = {"DEBUG": 0, "INFO": 1, "WARN": 2}   # platform.start and .report are INFO, runtimeDone DEBUG


def json_platform_lines(run: "Execution", billed: int) -> tuple[str, str, str]:
    """The platform's lines of one invocation in JSON mode, in AWS's telemetry shapes
    (https://docs.aws.amazon.com/lambda/latest/dg/telemetry-schema-reference.html)."""
    info, rid = run.info, run.request_id
    status = {"success": "success", "timeout": "timeout"}.get(run.outcome.status, "error")
    metrics = {"durationMs": round(info.duration_ms, 3), "billedDurationMs": billed,
               "memorySizeMB": run.memory_size_mb, "maxMemoryUsedMB": int(info.memory_mb() or 0)}
    if info.init_ms is not None and info.restored:
        metrics["restoreDurationMs"] = round(info.init_ms, 3)
        metrics["billedRestoreDurationMs"] = math.ceil(info.init_ms)
    elif info.init_ms is not None:
        metrics["initDurationMs"] = round(info.init_ms, 3)
    failed = {"errorType": run.outcome.error_type} if status != "success" and run.outcome.error_type else {}
    line = lambda kind, ts, record: json.dumps({"time": iso(ts), "type": kind, "record": record})  # noqa: E731
    return (line("platform.start", info.started_at, {"requestId": rid, "version": run.version}),
            line("platform.runtimeDone", info.ended_at, {"requestId": rid, "status": status, **failed,
                                                         "metrics": {"durationMs": round(info.duration_ms, 3)}}),
            line("platform.report", info.ended_at, {"requestId": rid, "metrics": metrics, "status": status, **failed}))


def usage_record(request_id: str, user: str, config: FunctionConfig, itype: str, *, accepted: float,
                 start: float, end: float, duration_ms: float = 0.0, init_ms: float | None = None,
                 wait_ms: float = 0.0, peak_mb: float | None = None, status: str,
                 error_type: str | None = None, container_id: str = "", backend: str,
                 attempt: int = 0, version: str = "$LATEST", trigger: str | None = None,
                 restored: bool = False) -> dict:
    """accepted, start, end: epoch seconds (accepted: when the dispatcher took the call in; an async
    retry keeps the first). restored (SnapStart): init_ms is a restore, recorded as restore_ms."""
    restore_ms = init_ms if restored else None
    init_ms = None if restored else init_ms
    return {"request_id": request_id, "user": user, "function": config.name, "invocation_type": itype,
            "accepted": iso(accepted), "start": iso(start), "end": iso(end),
            "duration_ms": round(duration_ms, 3), "billed_ms": billed_ms(duration_ms, init_ms or restore_ms),
            "init_ms": None if init_ms is None else round(init_ms, 3),
            "restore_ms": None if restore_ms is None else round(restore_ms, 3), "wait_ms": round(wait_ms, 3),
            "memory_mb": config.memory_mb, "max_memory_used_mb": None if peak_mb is None else round(peak_mb, 1),
            "status": status, "error_type": error_type, "container_id": container_id, "backend": backend,
            "attempt": attempt, "version": version, "trigger": trigger}


def ran_record(request_id: str, user: str, config: FunctionConfig, itype: str, run: Execution,
               wait_ms: float, accepted: float, attempt: int = 0, trigger: str | None = None) -> dict:
    info = run.info
    return usage_record(request_id, user, config, itype, accepted=accepted or info.started_at,
                        start=info.started_at, end=info.ended_at, duration_ms=info.duration_ms,
                        init_ms=info.init_ms, wait_ms=wait_ms, peak_mb=info.memory_mb(),
                        status=run.outcome.status, error_type=run.outcome.error_type,
                        container_id=info.container_id, backend=info.backend, attempt=attempt,
                        version=config.version, trigger=trigger, restored=info.restored)


def unrun_record(request_id: str, user: str, config: FunctionConfig, itype: str, status: str,
                 accepted: float, now: float, backend: str) -> dict:
    """A call that ended without running (throttled after waiting, or its caller gone)."""
    return usage_record(request_id, user, config, itype, accepted=accepted, start=now, end=now,
                        wait_ms=(now - accepted) * 1000, status=status, backend=backend, version=config.version)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def billed_ms(duration_ms: float, init_ms: float | None) -> int:
    """Rounded up to the next ms; init is billed too (AWS bills the init phase since 2025)."""
    return int(math.ceil(duration_ms + (init_ms or 0.0)))


def usage_item(record: dict) -> dict:
    item = {k: (Decimal(str(v)) if isinstance(v, float) else v) for k, v in record.items()}
    item["sk"] = f"{record['start']}#{record['request_id']}"
    return {k: _ser.serialize(v) for k, v in item.items()}


def from_item(item: dict) -> dict:
    out = {k: _deser.deserialize(v) for k, v in item.items()}
    out.pop("sk", None)
    return {k: (float(v) if isinstance(v, Decimal) and v % 1 else int(v) if isinstance(v, Decimal) else v)
            for k, v in out.items()}


def report_lines(request_id: str, duration_ms: float, billed: int, memory_mb: int,
                 max_used_mb: float | None, init_ms: float | None, version: str = "$LATEST",
                 restored: bool = False) -> tuple[str, str, str]:
    # Tab-separated, each field followed by a tab (the line ends in one), as AWS writes it. A SnapStart
    # restore reports Restore Duration and Billed Restore Duration instead of Init Duration
    # (https://docs.aws.amazon.com/lambda/latest/dg/snapstart-monitoring.html).
    report = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed} ms\t"
              f"Memory Size: {memory_mb} MB\tMax Memory Used: {int(max_used_mb or 0)} MB\t")
    if init_ms is not None and restored:
        report += f"Restore Duration: {init_ms:.2f} ms\tBilled Restore Duration: {math.ceil(init_ms)} ms\t"
    elif init_ms is not None:
        report += f"Init Duration: {init_ms:.2f} ms\t"
    return f"START RequestId: {request_id} Version: {version}", f"END RequestId: {request_id}", report


def reseed_from_log(ddb, path: Path) -> int:
    """The embedded AWS keeps state in memory: after a restart, refill the usage table from the log."""
    if not path.exists():
        return 0
    records = []
    with path.open() as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue   # a torn last line after a crash
    for i in range(0, len(records), 25):
        batch = {names.USAGE_TABLE: [{"PutRequest": {"Item": usage_item(r)}} for r in records[i:i + 25]]}
        while batch:
            batch = ddb.batch_write_item(RequestItems=batch).get("UnprocessedItems") or {}
    return len(records)
