"""The one small interface every container backend implements (process, docker).

A backend starts one container from a `ContainerSpec` and returns a `Handle`. The
container runs awslambdaric over the function's handler and reaches mk1's Runtime
API at `spec.runtime_api` (host:port) — or, for backends whose containers have no
network, through the Unix socket `spec.runtime_socket` that mk1 also serves.
Everything about lifecycle (states, timeouts, reaping) lives above this layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol


@dataclass(frozen=True)
class ContainerSpec:
    container_id: str                 # mk1's id, e.g. "RuntimeAlpha-3f2a9c"
    function_name: str
    code_dir: Path                    # the unpacked deployment zip (read-only for the container)
    work_dir: Path                    # a private scratch directory (the container's /tmp)
    handler: str                      # e.g. "handler.handler"
    env: dict[str, str]               # function env + standard AWS_LAMBDA_* variables
    memory_mb: int
    runtime_api: str                  # "127.0.0.1:PORT": this container's own Runtime API endpoint
    runtime_socket: Path | None = None  # the same endpoint as a Unix socket (for --network none)
    on_output: Callable[[str], None] = field(default=lambda line: None)  # each stdout/stderr line
    runtime: str = "python3.11"       # the function's declared runtime (python3.x, provided.al2023, ...)
    # SnapStart: restore from the snapshot of this key (the version's fingerprint), made on first use,
    # where the backend can (Handle.restored says whether it did); None: a normal cold start.
    snapshot_key: tuple | None = None
    init_timeout_s: float = 60.0      # how long a snapshot's init may take


class Handle(Protocol):
    """A started container."""

    id: str            # the backend's own id (pid, docker container id)
    restored: bool     # restored from a snapshot (SnapStart), not started and initialised

    def wait(self) -> int:
        """Block until the container exits; return its exit code (negative: killed by signal)."""

    def kill(self) -> None:
        """Stop at once (SIGKILL). Idempotent."""

    def max_memory_mb(self) -> float | None:
        """Peak memory so far, where measurable."""

    def remove(self) -> None:
        """Free what the container left behind (after it exited). Idempotent."""


class Backend(Protocol):
    name: str                          # "process" | "docker"
    needs_socket: bool                 # True: serve the Runtime API on spec.runtime_socket too

    def prepare(self, progress: Callable[[str], None] = print) -> None:
        """One-off set-up before the first start (e.g. build the image). Idempotent."""

    def start(self, spec: ContainerSpec) -> Handle:
        ...

    def cleanup_orphans(self) -> int:
        """Remove containers this backend left behind in an earlier run; return how many."""
