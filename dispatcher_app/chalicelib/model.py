"""Plain data passed along the call path."""
from __future__ import annotations

import functools
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class AsyncConfig:
    """How the function's Event calls end (PutFunctionEventInvokeConfig, DeadLetterConfig): retries,
    the oldest event still run, and where outcomes go (destination ARNs; "" = none)."""
    max_retries: int | None = None       # 0-2; None: mk1's MK1_ASYNC_RETRIES (AWS's default is 2)
    max_age_s: int = 21_600              # 60-21,600 (AWS's default: 6 hours)
    on_success: str = ""
    on_failure: str = ""
    dead_letter: str = ""                # the function's DeadLetterConfig.TargetArn (SQS or SNS)


NO_ASYNC_CONFIG = AsyncConfig()


@dataclass(frozen=True)
class LogSettings:
    """The function's LoggingConfig (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html):
    Text or JSON lines, the levels a JSON function's own and the platform's lines are filtered at,
    and the log group they go to ("" = /aws/lambda/<name>)."""
    format: str = "Text"
    application_level: str = ""   # TRACE..FATAL (JSON only)
    system_level: str = ""        # DEBUG | INFO | WARN (JSON only)
    group: str = ""

    @staticmethod
    def from_api(c: dict | None) -> "LogSettings":
        c = c or {}
        return LogSettings(c.get("LogFormat") or "Text", c.get("ApplicationLogLevel") or "",
                           c.get("SystemLogLevel") or "", c.get("LogGroup") or "")


TEXT_LOGS = LogSettings()


@dataclass(frozen=True)
class FunctionConfig:
    """One version of a function as the Lambda control plane describes it (refreshed in the
    background): $LATEST, or a published version (frozen code and configuration)."""
    name: str
    arn: str                      # the function's ARN, unqualified
    code_sha: str
    handler: str
    runtime: str
    timeout_s: float
    memory_mb: int
    env: dict
    reserved: int | None          # reserved concurrency, the function's (all versions share it); None = not set
    code_location: str = ""
    version: str = "$LATEST"
    layers: tuple = ()            # layer version ARNs
    generation: int = field(default=0, compare=False)   # which control-plane read it came from
    throttle: str = "queue"       # at the cap: "queue" (wait in the function's SQS queue) or "aws" (429 at once)
    events: AsyncConfig = field(default=NO_ASYNC_CONFIG, compare=False)   # how its Event calls end
    snap_start: bool = False      # SnapStart ApplyOn=PublishedVersions, and this is a published version
    logging: LogSettings = TEXT_LOGS

    @property
    def log_group(self) -> str:
        return self.logging.group or f"/aws/lambda/{self.name}"

    @functools.cached_property
    def fingerprint(self) -> tuple:
        """What an execution environment is made from: a container serves only calls of its own
        version and fingerprint, so a changed handler, environment, memory, timeout, runtime or
        code reaches the next call through a new container (the old ones drain)."""
        return (self.version, self.code_sha, self.handler, self.runtime, self.timeout_s, self.memory_mb,
                tuple(sorted(self.env.items())), self.layers, self.snap_start, self.logging)

    @property
    def version_arn(self) -> str:
        return self.arn if self.version == "$LATEST" else f"{self.arn}:{self.version}"


def log_stream_name(version: str, container_id: str) -> str:
    """A container's CloudWatch log stream, as Lambda names an environment's: [VERSION]id."""
    return f"[{version}]{container_id}"


@dataclass(frozen=True)
class EventSourceMapping:
    """An event source mapping as the Lambda API describes it (ListEventSourceMappings)."""
    uuid: str
    arn: str                       # EventSourceMappingArn
    source_arn: str                # the queue's ARN
    function: str                  # name
    qualifier: str | None
    batch_size: int
    window_s: float
    enabled: bool
    report_failures: bool
    filters: tuple[str, ...]       # FilterCriteria patterns (JSON)
    max_concurrency: int | None

    @staticmethod
    def from_api(m: dict) -> "EventSourceMapping":
        fn = m["FunctionArn"].split(":")
        patterns = tuple(f.get("Pattern", "") for f in (m.get("FilterCriteria") or {}).get("Filters") or [])
        return EventSourceMapping(m["UUID"], m.get("EventSourceMappingArn", m["UUID"]), m["EventSourceArn"], fn[6],
                       fn[7] if len(fn) > 7 else None, int(m.get("BatchSize") or 10),
                       float(m.get("MaximumBatchingWindowInSeconds") or 0), m.get("State", "Enabled") == "Enabled",
                       "ReportBatchItemFailures" in (m.get("FunctionResponseTypes") or []), patterns,
                       (m.get("ScalingConfig") or {}).get("MaximumConcurrency"))


@dataclass(frozen=True)
class Cors:
    """A function URL's CORS configuration (https://docs.aws.amazon.com/lambda/latest/api/API_Cors.html)."""
    allow_credentials: bool = False
    allow_headers: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_origins: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None

    @staticmethod
    def from_api(c: dict | None) -> "Cors | None":
        if not c:
            return None
        t = lambda key: tuple(str(x) for x in c.get(key) or ())   # noqa: E731
        return Cors(bool(c.get("AllowCredentials")), t("AllowHeaders"), t("AllowMethods"), t("AllowOrigins"),
                    t("ExposeHeaders"), c.get("MaxAge"))


@dataclass(frozen=True)
class FunctionUrl:
    """A function URL (GetFunctionUrlConfig), by its id: the host's first label."""
    url_id: str
    function: str                  # name
    qualifier: str | None          # an alias, $LATEST, or None (the unqualified function)
    url: str                       # FunctionUrl
    auth_type: str                 # NONE | AWS_IAM
    cors: Cors | None
    invoke_mode: str               # BUFFERED | RESPONSE_STREAM
    public: bool = False           # a resource-based policy lets anyone (*) invoke it (AuthType NONE)


@dataclass(frozen=True)
class Alias:
    name: str
    version: str                               # the version it points to
    weights: tuple[tuple[str, float], ...] = ()  # RoutingConfig.AdditionalVersionWeights


@dataclass
class Outcome:
    """How one invocation ended, in the container layer's words."""
    status: str                   # success | function_error | timeout | crash | init_error
    payload: bytes
    error_type: str | None = None

    @property
    def is_error(self) -> bool:
        return self.status != "success"


class ResponseStream:
    """A streamed answer on its way from the function to its caller (InvokeWithResponseStream, a
    RESPONSE_STREAM function URL): the Runtime API thread puts what the runtime sends as it arrives;
    the caller's front-door thread takes it and writes it out, so neither waits for the other.

    Items: ("start", executed version) once the call is placed; ("type", content type) when the
    runtime begins a streamed answer; ("chunk", bytes) each chunk; ("end", None) when the call ended
    (its result, or error, is then the caller's thread's)."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.streamed = False        # the runtime answered in streaming mode
        self.content_type = ""

    def put(self, kind: str, value=None) -> None:
        self._q.put((kind, value))

    def get(self, timeout: float | None = None) -> tuple[str, object]:
        return self._q.get(timeout=timeout)


@dataclass
class Invocation:
    """One call on its way through the pool and a container: everything in flight about it lives
    here (not in tables keyed by request id), from the hand-off to its answer."""
    request_id: str
    payload: bytes
    function_arn: str
    trace_id: str
    deadline_ms: int = 0
    logs: list = field(default_factory=list)
    outcome: Outcome | None = None
    done: threading.Event = field(default_factory=threading.Event)
    taken_by: object | None = None   # the Container that took it from the hand-off line (handoff.py)
    client_context: str | None = None   # the caller's ClientContext (JSON text), for the runtime
    handed: bool = False             # put on the hand-off line as its slot was granted (pool.prepare)
    stream: ResponseStream | None = None   # its caller takes the answer as a stream (else it is buffered)
    streamed_body: bytearray | None = None  # a streamed answer kept for a buffered caller (to 6 MB)
    # Its slot's release, for the pool to call as soon as the function answers (pool.answered), and
    # whether it did (then the container is free already). Both under the pool's lock.
    release: Callable[[], None] | None = field(default=None, repr=False)
    freed: bool = False
    # Its execution, whichever thread wakes when: monotonic and wall clock when it went out to the
    # runtime (one reading), monotonic when its answer came in (container.py).
    out_at: float | None = None
    out_wall: float | None = None
    answered_at: float | None = None

    def finish(self, outcome: Outcome) -> bool:
        """First finisher wins (response, crash monitor or timeout race)."""
        if self.done.is_set():
            return False
        self.outcome = outcome
        self.done.set()
        return True


@dataclass
class ExecInfo:
    container_id: str
    backend: str
    cold: bool
    init_ms: float | None
    duration_ms: float
    max_memory_mb: float | None  # see memory_mb()
    started_at: float            # wall clock, epoch seconds
    ended_at: float
    # The container's peak memory reading, made when first asked for (memory_mb()): a pread of its
    # status file, or for Docker a cgroup file or an engine call. Asked for by the usage record and
    # the REPORT line, once the answer has gone out, unless the answer carries its log (Tail).
    read_memory: Callable[[], float | None] | None = field(default=None, repr=False, compare=False)
    restored: bool = False       # SnapStart: init_ms is the Restore Duration (the init ran at publish)

    def memory_mb(self) -> float | None:
        if self.read_memory is not None:
            self.max_memory_mb, self.read_memory = self.read_memory(), None
        return self.max_memory_mb


# -- what the call path returns (edge/answers.py makes Lambda's answers of them) --

@dataclass
class SyncResult:
    """A RequestResponse call that ran: the function's answer and how mk1 ran it."""
    request_id: str
    payload: bytes
    function_error: bool          # the function failed (Lambda: X-Amz-Function-Error: Unhandled)
    run: dict[str, str]           # container, cold, duration-ms, wait-ms, started-at, dispatcher[, init-ms]
    log_lines: list[str] | None = None   # START .. REPORT, when the caller asked for the log (Tail)
    executed_version: str = "$LATEST"

    def as_data(self, pack: Callable[[bytes], dict]) -> dict:
        """Plain data for a reply queue (cluster mode); pack stores the payload."""
        return {"payload": pack(self.payload), "function_error": self.function_error, "run": self.run,
                "log_lines": self.log_lines, "executed_version": self.executed_version}

    @classmethod
    def from_data(cls, request_id: str, data: dict, unpack: Callable[[dict], bytes]) -> "SyncResult":
        return cls(request_id, unpack(data["payload"]), bool(data["function_error"]), dict(data["run"]),
                   data.get("log_lines"), data.get("executed_version", "$LATEST"))


@dataclass(frozen=True)
class Accepted:
    """An Event call, queued: it runs later (Lambda answers 202)."""
    request_id: str


@dataclass(frozen=True)
class DryRunPassed:
    """A DryRun call that would have been allowed (Lambda answers 204)."""
    request_id: str
