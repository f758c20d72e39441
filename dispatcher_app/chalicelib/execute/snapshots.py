"""SnapStart on the process backend: a version's snapshot, and environments restored from it.

A `Snapshot` is one process per (version, fingerprint) that ran the function's init once — the
handler's import, so `load()`, and the before-snapshot hooks — and now waits, initialised, in the
Runtime API's `restore/next` (snapstart_boot/mk1_snapstart.py). Each restore is a fork of it (made
ahead as a spare, given its identity when the call comes): the child is a new execution environment (its own process and session, its own Runtime API endpoint, working
directory and memory limit) that runs the after-restore hooks and asks for its first event. So a
cold start costs a fork, not an interpreter start plus init: SOCK's pre-initialised zygotes, and what
AWS's microVM snapshots give Lambda SnapStart.

States: CREATING -> READY (restores served) | FAILED (its init failed: every restore answers that
error) ; READY/CREATING -> STOPPED (its version drained or deleted, or mk1 stopping).

The control channel is a SOCK_SEQPACKET socket pair (a message per datagram; the new environment's
stdout travels as a passed descriptor): mk1 -> snapshot {"op": "restore"}; snapshot -> mk1 "ready",
"init_error", "restored" (the child's pid), "exited" (a child's exit status: the snapshot is its parent).
"""
from __future__ import annotations

import enum
import itertools
import json
import logging
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("mk1.snapstart")

BOOT = Path(__file__).parent / "snapstart_boot" / "mk1_snapstart.py"
RESTORE_TIMEOUT_S = 10.0    # AWS: the runtime and the after-restore hooks get 10 s (SnapStartTimeoutException)
# SnapStart functions see neither (AWS: "not available in Lambda SnapStart functions").
NOT_IN_SNAPSHOTS = ("AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME")


class SnapshotState(enum.Enum):
    CREATING = "creating"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


class SnapshotFailed(Exception):
    """The snapshot's init failed (the function's own error), or it is gone."""

    def __init__(self, message: str, error_type: str, body: bytes):
        super().__init__(message)
        self.error_type, self.body = error_type, body


class Snapshot:
    def __init__(self, key: tuple, argv: list[str], env: dict[str, str], cwd: Path,
                 on_output: Callable[[str], None], init_timeout_s: float, preexec: Callable[[], None] | None = None):
        self.key = key
        self.state = SnapshotState.CREATING
        self.init_ms: float | None = None
        self.closed_connections = 0
        self._cond = threading.Condition()
        self._failure: SnapshotFailed | None = None
        self._restored: dict[int, tuple] = {}          # request id -> (pid, its Runtime API listener)
        self._exits: dict[int, int] = {}               # pid -> exit code
        self._ids = itertools.count(1)
        self._on_output = on_output
        self._init_timeout_s = init_timeout_s
        self._created = time.monotonic()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ctl = ours
        self._send_lock = threading.Lock()
        try:
            self.proc = subprocess.Popen(
                [argv[0], "-u", str(BOOT), *argv[1:]], cwd=cwd,
                env={k: v for k, v in env.items() if k not in NOT_IN_SNAPSHOTS} | {
                    "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start", "_MK1_SNAPSHOT_FD": str(theirs.fileno())},
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                pass_fds=[theirs.fileno()], start_new_session=True, preexec_fn=preexec)
        finally:
            theirs.close()
        self.pid = self.proc.pid
        threading.Thread(target=self._read_output, daemon=True, name=f"snap-out-{self.pid}").start()
        threading.Thread(target=self._read_control, daemon=True, name=f"snap-ctl-{self.pid}").start()

    # -- the snapshot process's messages --
    def _read_output(self) -> None:
        for raw in self.proc.stdout:  # type: ignore[union-attr]
            self._on_output(raw.decode("utf-8", "replace").rstrip("\n"))

    def _read_control(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._ctl, 1 << 20, 2)
            except OSError:
                data, fds = b"", []
            if not data:
                break
            msg = json.loads(data)
            with self._cond:
                op = msg.get("op")
                if op == "ready" and self.state is SnapshotState.CREATING:
                    self.state = SnapshotState.READY
                    self.init_ms = (time.monotonic() - self._created) * 1000
                    self.closed_connections = int(msg.get("closed_connections") or 0)
                elif op == "init_error":
                    body = json.dumps(msg.get("error") or {}).encode()
                    self._fail(SnapshotFailed(str((msg.get("error") or {}).get("errorMessage", "init failed")),
                                              str(msg.get("type") or "Runtime.Unknown"), body))
                elif op == "restored":
                    listener = socket.socket(fileno=fds.pop()) if fds else None
                    self._restored[int(msg["id"])] = (int(msg["pid"]), listener)
                elif op == "exited":
                    self._exits[int(msg["pid"])] = int(msg["code"])
                for fd in fds:
                    os.close(fd)
                self._cond.notify_all()
        code = self.proc.wait()
        with self._cond:
            if self.state is SnapshotState.CREATING:
                self._fail(SnapshotFailed(f"the snapshot process exited during init (code {code})",
                                          "Runtime.ExitError", b""))
            elif self.state is SnapshotState.READY:
                self.state = SnapshotState.STOPPED
            # Its environments were its children: they die with it (PDEATHSIG); none will report.
            for pid in self._restored.values():
                self._exits.setdefault(pid, -9)
            self._cond.notify_all()

    def _fail(self, failure: SnapshotFailed) -> None:
        """Caller holds self._cond."""
        if self._failure is None:
            self._failure = failure
        if self.state is SnapshotState.CREATING:
            self.state = SnapshotState.FAILED

    # -- mk1's side --
    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Until the init is done; raises SnapshotFailed with its error."""
        deadline = time.monotonic() + (self._init_timeout_s if timeout_s is None else timeout_s)
        with self._cond:
            while self.state is SnapshotState.CREATING:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._fail(SnapshotFailed(f"the function's init did not finish within {self._init_timeout_s:.0f} s",
                                              "Runtime.InitTimeout", b""))
                    break
                self._cond.wait(left)
            if self.state is not SnapshotState.READY:
                raise self._failure or SnapshotFailed("the snapshot was stopped", "Runtime.ExitError", b"")
        if self.state is SnapshotState.FAILED:
            self.stop()

    def restore(self, env: dict[str, str], cwd: Path, memory_mb: int) -> tuple[int, int, socket.socket]:
        """A new environment forked from the snapshot: its pid, the read end of its output, and the
        listening socket its Runtime API is to be served on (the environment knows its address)."""
        self.wait_ready()
        read_end, write_end = os.pipe()
        rid = next(self._ids)
        msg = {"op": "restore", "id": rid, "env": env, "cwd": str(cwd), "memory_mb": memory_mb,
               "unset": list(NOT_IN_SNAPSHOTS)}
        try:
            with self._send_lock:
                socket.send_fds(self._ctl, [json.dumps(msg).encode()], [write_end])
        except OSError as e:
            os.close(read_end)
            raise SnapshotFailed(f"the snapshot process is gone: {e}", "Runtime.ExitError", b"") from e
        finally:
            os.close(write_end)
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        with self._cond:
            while rid not in self._restored and self.state is SnapshotState.READY and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            pid, listener = self._restored.pop(rid, (None, None))
        if pid is None or pid < 0 or listener is None:
            os.close(read_end)
            raise SnapshotFailed("the snapshot did not fork a new environment", "Runtime.ExitError", b"")
        return pid, read_end, listener

    def wait_exit(self, pid: int) -> int:
        with self._cond:
            while pid not in self._exits:
                self._cond.wait()
            return self._exits.pop(pid)

    def exited(self, pid: int) -> bool:
        with self._cond:
            return pid in self._exits

    def stop(self) -> None:
        with self._cond:
            if self.state in (SnapshotState.CREATING, SnapshotState.READY):
                self.state = SnapshotState.STOPPED
            self._cond.notify_all()
        try:
            self._ctl.shutdown(socket.SHUT_RDWR)   # its loop reads EOF and exits; children follow
        except OSError:
            pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass

    def describe(self) -> dict:
        return {"state": self.state.value, "pid": self.pid,
                "init_ms": None if self.init_ms is None else round(self.init_ms, 1)}


class Snapshots:
    """The snapshots of one backend, by key (a version's fingerprint): made once, kept while in use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple, Snapshot] = {}

    def get(self, key: tuple, make: Callable[[], Snapshot]) -> Snapshot:
        with self._lock:
            snap = self._by_key.get(key)
            # A failed one is made again: the pool's init backoff decides how often that is asked.
            if snap is None or snap.state in (SnapshotState.STOPPED, SnapshotState.FAILED):
                snap = self._by_key[key] = make()
            return snap

    def has(self, key: tuple) -> bool:
        with self._lock:
            return key in self._by_key

    def retire(self, keep: Callable[[tuple], bool]) -> list[tuple]:
        """Stop the snapshots whose key `keep` rejects (a version drained, a function deleted)."""
        with self._lock:
            gone = [k for k in self._by_key if not keep(k)]
            snaps = [self._by_key.pop(k) for k in gone]
        for s in snaps:
            s.stop()
        return gone

    def stop_all(self) -> None:
        self.retire(lambda key: False)

    def describe(self) -> dict:
        with self._lock:
            return {str(k[0]): s.describe() for k, s in self._by_key.items()}
