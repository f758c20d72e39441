"""Process backend: one OS process per container: awslambdaric on the runtime's Python, or a
custom runtime's bootstrap (runtimes.py); with SnapStart, a fork of the version's snapshot process
(snapshots.py).

Each container gets its own working directory, its own session (so a kill takes
its children too), a clean environment (no AWS credentials of mk1's), and an
address-space limit derived from the function's memory size.
"""
from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Callable

from my_mk1_homework import settings as settings_mod

from chalicelib.cpu import every_cpu, on_every_cpu
from chalicelib.execute.backends.base import ContainerSpec
from chalicelib.execute.runtimes import PROVIDED, Runtimes, with_exec_wrapper
from chalicelib.execute.snapshots import Snapshot, Snapshots

log = logging.getLogger("mk1.process")

# Python + awslambdaric map far more virtual memory than they use (thread stacks,
# arenas), so the limit is the function's memory plus a fixed allowance.
ADDRESS_SPACE_ALLOWANCE_MB = 1024


def _spawn(argv: list[str], memory_mb: int, **popen) -> subprocess.Popen:
    """A container's process, started without a preexec_fn. With one, Python forks rather than
    vforks, and the child of a fork cleans up after every other thread of the dispatcher's
    (CPython's after-fork clean-up, ~18 us a thread): with the front door's 1,024 kept connection
    threads, or a burst's, each cold start paid ~20 ms for it, against ~0.6 ms now.

    Its CPUs come from the thread that starts it (a child inherits that thread's mask, and the
    dispatcher's threads are on one CPU: chalicelib/cpu.py). Its limits are set on it by pid once
    it has exec'd: microseconds into its start, while a Python runtime's interpreter is still
    starting (the function's code is imported milliseconds later); a custom runtime's bootstrap
    runs unlimited for those microseconds."""
    if not hasattr(resource, "prlimit"):   # not Linux: set in the child, as a fork
        return subprocess.Popen(argv, start_new_session=True, preexec_fn=_limits_in_child(memory_mb), **popen)
    with on_every_cpu():
        proc = subprocess.Popen(argv, start_new_session=True, **popen)
    try:
        for which, value in _limits(memory_mb):
            resource.prlimit(proc.pid, which, value)
    except (ValueError, OSError):   # where the OS refuses, run without the limit
        pass
    return proc


def _limits(memory_mb: int) -> list[tuple[int, tuple[int, int]]]:
    """A container's: its address space (its memory size and an allowance), and no core file."""
    space = (memory_mb + ADDRESS_SPACE_ALLOWANCE_MB) * 1024 * 1024
    return [(resource.RLIMIT_AS, (space, space)), (resource.RLIMIT_CORE, (0, 0))]


def _limits_in_child(memory_mb: int) -> Callable[[], None]:
    def apply() -> None:
        every_cpu()   # not the dispatcher's one CPU (chalicelib/cpu.py)
        try:
            for which, value in _limits(memory_mb):
                resource.setrlimit(which, value)
        except (ValueError, OSError):
            pass  # where the OS refuses, run without the limit
    return apply


class ProcessHandle:
    restored = False

    def __init__(self, proc: subprocess.Popen | None, spec: ContainerSpec, pid: int | None = None,
                 output=None):
        """A started process (proc), or one of another parent's (pid, and its output's read end)."""
        self.proc = proc
        self.pid = proc.pid if proc is not None else pid
        self._output = proc.stdout if proc is not None else output
        self.id = f"pid-{self.pid}"
        self._spec = spec
        self._peak_mb: float | None = None
        self._status_fd: int | None = None     # /proc/<pid>/status, read with pread
        self._exited = False                   # reaped: its pid may name another process now
        self._status_lock = threading.Lock()
        self._reader = threading.Thread(target=self._pump_output, daemon=True,
                                        name=f"out-{spec.container_id}")
        self._reader.start()

    def _pump_output(self) -> None:
        for raw in self._output:  # type: ignore[union-attr]
            self._sample_memory()
            self._spec.on_output(raw.decode("utf-8", "replace").rstrip("\n"))

    def _sample_memory(self) -> None:
        # After every invocation, on the caller's path: one pread of a status file kept open
        # (~5 us) rather than open + read lines + close (~20 us, 4x that on a loaded machine).
        with self._status_lock:
            if self._exited:
                return   # the last reading stands (a call's reading may come after the exit)
            try:
                if self._status_fd is None:
                    self._status_fd = os.open(f"/proc/{self.pid}/status", os.O_RDONLY)
                data = os.pread(self._status_fd, 8192, 0)
            except OSError:
                return   # the process is gone: keep the last reading
        at = data.find(b"VmHWM:")
        if at >= 0:
            self._peak_mb = int(data[at + 6:data.index(b"kB", at)]) / 1024

    def _close_status(self) -> None:
        with self._status_lock:
            self._exited = True
            if self._status_fd is not None:
                os.close(self._status_fd)
                self._status_fd = None

    def max_memory_mb(self) -> float | None:
        self._sample_memory()
        return self._peak_mb

    def wait(self) -> int:
        code = self._wait()
        self._reader.join(timeout=2)
        self._close_status()
        return code

    def _wait(self) -> int:
        return self.proc.wait()

    def _running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self._running():
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        self._close_status()
        shutil.rmtree(self._spec.work_dir, ignore_errors=True)


class RestoredHandle(ProcessHandle):
    """An environment forked from a snapshot: the snapshot process is its parent and reports its exit."""
    restored = True

    def __init__(self, snapshot: Snapshot, pid: int, output_fd: int, spec: ContainerSpec,
                 runtime_listener: socket.socket):
        self.snapshot = snapshot
        self.runtime_listener = runtime_listener   # the container serves its Runtime API on it
        super().__init__(None, spec, pid, os.fdopen(output_fd, "rb"))

    def _wait(self) -> int:
        return self.snapshot.wait_exit(self.pid)

    def _running(self) -> bool:
        return not self.snapshot.exited(self.pid)


class ProcessBackend:
    name = "process"
    needs_socket = False

    def __init__(self, runtimes: Runtimes | None = None):
        self.runtimes = runtimes or Runtimes(Path(settings_mod.load().MK1_RUNTIMES_DIR))
        self.snapshots = Snapshots()

    def prepare(self, progress: Callable[[str], None] = print) -> None:
        pass

    def start(self, spec: ContainerSpec) -> ProcessHandle:
        if self.restores(spec.snapshot_key, spec.runtime):
            return self._restore(spec)
        argv, runtime_env = self.runtimes.command(spec.runtime, spec.handler, spec.code_dir)
        argv = with_exec_wrapper(argv, spec.runtime, spec.env, spec.code_dir)
        spec.work_dir.mkdir(parents=True, exist_ok=True)
        env = self._env(spec, spec.work_dir, runtime_env)
        proc = _spawn(argv, spec.memory_mb, cwd=spec.code_dir, env=env, stdin=subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return ProcessHandle(proc, spec)

    # -- SnapStart --
    def snapshot(self, spec: ContainerSpec) -> Snapshot:
        """The version's snapshot, made (its init run) if there is none yet."""
        assert spec.snapshot_key is not None
        return self.snapshots.get(spec.snapshot_key, lambda: self._make_snapshot(spec))

    def _make_snapshot(self, spec: ContainerSpec) -> Snapshot:
        argv, runtime_env = self.runtimes.command(spec.runtime, spec.handler, spec.code_dir)
        argv = argv[:1] + argv[4:]   # [python, -u, -m, awslambdaric, handler] -> [python, handler]
        home = spec.work_dir.parent / f"snapshot-{spec.container_id}"
        home.mkdir(parents=True, exist_ok=True)
        env = {**self._env(spec, home, runtime_env)}
        log.info("%s: making the SnapStart snapshot of version %s (its init runs once)",
                 spec.function_name, spec.snapshot_key[1])
        return Snapshot(spec.snapshot_key, argv, env, spec.code_dir, on_output=spec.on_output,
                        init_timeout_s=spec.init_timeout_s, preexec=_limits_in_child(spec.memory_mb))

    def _restore(self, spec: ContainerSpec) -> ProcessHandle:
        snap = self.snapshot(spec)
        spec.work_dir.mkdir(parents=True, exist_ok=True)
        own = {"HOME": str(spec.work_dir), "TMPDIR": str(spec.work_dir)}
        pid, output, listener = snap.restore(own, spec.code_dir, spec.memory_mb)
        return RestoredHandle(snap, pid, output, spec, listener)

    def restores(self, snapshot_key: tuple | None, runtime: str) -> bool:
        """This start is a restore: the Runtime API listener comes with the handle (runtime_listener)."""
        return snapshot_key is not None and runtime not in PROVIDED

    def _env(self, spec: ContainerSpec, home: Path, runtime_env: dict[str, str]) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                "HOME": str(home), "TMPDIR": str(home),
                "PYTHONPATH": str(spec.code_dir), "PYTHONDONTWRITEBYTECODE": "1", **runtime_env,
                **spec.env, "AWS_LAMBDA_RUNTIME_API": spec.runtime_api}

    def retire_snapshots(self, keep) -> None:
        self.snapshots.retire(keep)

    def shutdown(self) -> None:
        self.snapshots.stop_all()

    def cleanup_orphans(self) -> int:
        return 0  # processes are in our session tree; they die with `mk1 up`
