"""Every knob of mk1, declared once: name, default, meaning.

Read from the environment when `load()` is called (never frozen at import time),
so tests and `make up` can each build their own `Settings`. docs/CONFIGURATION.md's
configuration table is checked against `SETTINGS` by a test.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    env: str
    default: Any
    parse: Callable[[str], Any]
    doc: str


def _bool(raw: str) -> bool:
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _float_or_none(raw: str) -> float | None:
    return float(raw) if raw.strip() else None


SETTINGS: dict[str, Setting] = {s.env: s for s in [
    Setting("MK1_HOME", str(PROJECT_ROOT / ".mk1"), str,
            "Directory for state and generated files (credentials, usage log, code cache, pids)."),
    Setting("MK1_AWS_HOST", "127.0.0.1", str, "Interface the embedded AWS (moto server) binds to."),
    Setting("MK1_AWS_PORT", 4566, int, "Port of the embedded AWS API."),
    Setting("AWS_ENDPOINT_URL", "", str,
            "AWS endpoint used by every mk1 component. Empty: the embedded moto server "
            "(started by mk1). Set it to LocalStack's URL to use LocalStack instead."),
    Setting("MK1_EMBEDDED_AWS", "auto", str,
            "auto: start the embedded moto server unless AWS_ENDPOINT_URL points elsewhere; "
            "never: do not start it."),
    Setting("AWS_DEFAULT_REGION", "us-east-1", str, "Region of every AWS resource."),
    Setting("MK1_DISPATCHER_HOST", "127.0.0.1", str, "Interface the dispatcher binds to."),
    Setting("MK1_DISPATCHER_PORT", 8000, int, "Port of the dispatcher (Lambda Invoke API)."),
    Setting("MK1_DISPATCHER_CPU", "auto", str,
            "CPU the dispatcher's threads run on (its functions use every CPU): auto (the last CPU, when "
            "there are two or more and not in cluster mode), all (no pinning), or a CPU number."),
    Setting("MK1_UI_PORT", 8501, int, "Port of the Streamlit UI."),
    Setting("MK1_ENDPOINT", "", str,
            "Dispatcher URL used by the client classes and the CLI (default "
            "http://MK1_DISPATCHER_HOST:MK1_DISPATCHER_PORT)."),
    Setting("MK1_BACKEND", "auto", str,
            "Container backend: process, docker, or auto (docker when an engine answers)."),
    Setting("MK1_KEEPALIVE_MS", 300_000, int,
            "Idle time after which a warm container is stopped (0 = stop after each invoke)."),
    Setting("MK1_PLACEMENT", "round-robin", str,
            "Which idle warm container serves a call: round-robin or warm-first (most recently used)."),
    Setting("MK1_START_TIMEOUT_MS", 60_000, int,
            "Time a new container may take to finish init (import + load()) before it is failed."),
    Setting("MK1_RUNTIMES_DIR", str(PROJECT_ROOT / ".mk1" / "runtimes"), str,
            "Where the process backend keeps the Lambda runtime client for each python3.x runtime "
            "other than the dispatcher's own Python (installed there on first use)."),
    Setting("MK1_INIT_BACKOFF_MS", 2_000, int,
            "After an init error, new cold starts of that code wait this long (doubling, max 60 s)."),
    Setting("MK1_AWS_PERSIST", True, _bool,
            "Keep the embedded AWS's control plane (functions, versions, aliases, URLs, IAM, keys, queues) "
            "across its restarts: changes are journaled to MK1_HOME/aws-state.jsonl and replayed at start."),
    Setting("MK1_AWS_AUTH", True, _bool,
            "The embedded AWS answers only SigV4-signed requests of a known identity (the users' IAM keys, "
            "or the operator's: profile operator in MK1_HOME/credentials), and IAM decides what each may do."),
    Setting("MK1_SNAPSTART_LATEST", False, _bool,
            "Restore $LATEST from a snapshot too (SnapStart, process backend): a function's init (load()) "
            "runs once per code version, not once per container. Off: only published versions with "
            "SnapStart ApplyOn=PublishedVersions restore, as on AWS."),
    Setting("MK1_MAX_QUEUE_DEPTH", 200, int,
            "Calls that may wait per function; beyond it the caller gets 429 at once."),
    Setting("MK1_MAX_WAIT_MS", 120_000, int,
            "Longest a synchronous call waits for a slot before it gets 429."),
    Setting("MK1_ASYNC_RETRIES", 2, int, "Retries of a failed async (Event) invocation before the DLQ."),
    Setting("MK1_ASYNC_RETRY_BACKOFF_MS", 1_000, int, "Backoff before the first async retry (doubles)."),
    Setting("MK1_CONTROL_REFRESH_MS", 1_000, int,
            "How often the dispatcher re-reads functions, versions, concurrency, users and policies "
            "(background); aliases, tags, event-invoke configs and event source mappings every 5th time."),
    Setting("MK1_USAGE_BATCH_MS", 200, int, "Longest a usage record waits before its batch is written."),
    Setting("MK1_LOGS_BATCH_MS", 1_000, int,
            "Longest a function's log line (START/END/REPORT, its output) waits before CloudWatch Logs gets it."),
    Setting("MK1_SQS_VISIBILITY_S", 30, int,
            "How long a received queue message stays hidden without a heartbeat (a dead dispatcher's "
            "messages reappear after this)."),
    Setting("MK1_CLUSTER", False, _bool,
            "Cluster mode: several dispatchers share one AWS endpoint; reserved concurrency is held "
            "globally with DynamoDB leases (off: the fast in-memory path of one dispatcher)."),
    Setting("MK1_LEASE_MS", 15_000, int,
            "Cluster mode: a running call's lease expiry; a dead dispatcher's slots come back after it."),
    Setting("MK1_EXECUTOR", "local", str,
            "local: run functions in mk1's containers; lambda: invoke them through the Lambda API at "
            "MK1_EXECUTOR_ENDPOINT (LocalStack with Docker, AWS, or another mk1)."),
    Setting("MK1_EXECUTOR_ENDPOINT", "", str, "Lambda API URL for MK1_EXECUTOR=lambda (empty: AWS itself)."),
    Setting("MK1_EXECUTOR_CREDENTIALS", "", str,
            "Shared-credentials file and profile for MK1_EXECUTOR=lambda, as FILE#PROFILE (empty: the "
            "default AWS credential chain)."),
    Setting("MK1_LOG_LEVEL", "INFO", str, "Log level of mk1's own processes."),
    Setting("MK1_ALPHA_LOAD_SECONDS", None, _float_or_none, "RuntimeAlpha load() time, set at deploy (default 2)."),
    Setting("MK1_ALPHA_GENERATE_SECONDS", None, _float_or_none, "RuntimeAlpha generate() time (default 1)."),
    Setting("MK1_BETA_LOAD_SECONDS", None, _float_or_none, "RuntimeBeta load() time (default 3)."),
    Setting("MK1_BETA_GENERATE_SECONDS", None, _float_or_none, "RuntimeBeta generate() time (default 1.5)."),
    Setting("MK1_FUNCTION_TIMEOUT", 30, int, "Timeout (seconds) given to the functions at deploy."),
    Setting("MK1_FUNCTION_MEMORY", 512, int, "Memory size (MB) given to the functions at deploy."),
    Setting("MK1_DOCKER_BASE_IMAGE", "", str,
            "Base image for function containers; empty: python:3.11-slim if it can be pulled, "
            "else an offline image built from Debian packages."),
    Setting("MK1_PRICE_GB_SECOND", 0.0000166667, float, "Estimated price per GB-second (AWS x86 list price)."),
    Setting("MK1_PRICE_PER_REQUEST", 0.0000002, float, "Estimated price per request (AWS list price)."),
]}


class Settings:
    """A snapshot of the settings, e.g. `load().MK1_DISPATCHER_PORT`."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    # Derived values: kept here so every component derives them the same way.
    @property
    def home(self) -> Path:
        return Path(self.MK1_HOME)

    @property
    def region(self) -> str:
        return self.AWS_DEFAULT_REGION

    @property
    def aws_endpoint(self) -> str:
        return self.AWS_ENDPOINT_URL or f"http://{self.MK1_AWS_HOST}:{self.MK1_AWS_PORT}"

    @property
    def embedded_aws(self) -> bool:
        if self.MK1_EMBEDDED_AWS == "never":
            return False
        return self.aws_endpoint == f"http://{self.MK1_AWS_HOST}:{self.MK1_AWS_PORT}"

    @property
    def dispatcher_url(self) -> str:
        return self.MK1_ENDPOINT or f"http://{self.MK1_DISPATCHER_HOST}:{self.MK1_DISPATCHER_PORT}"

    @property
    def credentials_file(self) -> Path:
        return self.home / "credentials"

    @property
    def usage_log(self) -> Path:
        return self.home / "usage.log"

    def with_overrides(self, **overrides: Any) -> "Settings":
        return Settings({**self._values, **overrides})


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    values = {}
    for name, s in SETTINGS.items():
        raw = env.get(name)
        values[name] = s.default if raw is None or raw == "" and s.default is not None else s.parse(raw)
    return Settings(values)
