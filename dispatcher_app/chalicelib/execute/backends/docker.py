"""Docker backend: one container per execution environment, like Lambda's microVMs.

Each container has no network at all (`--network none`): it reaches its own
Runtime API endpoint through that endpoint's Unix socket, bind-mounted alone (not
the directory of every container's sockets, so a function can never fetch
another container's invocations); infra/docker_shim.py bridges it to
awslambdaric's TCP. The root filesystem is read-only, /tmp is the container's
private work dir, the function's code is mounted read-only at /var/task, the
user is not root, and the memory limit is the function's memory size.

Containers carry mk1.* labels with their owner's pid and start time, so a later
run can remove what a crashed one left behind.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Callable

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.types import Mount

from infra import image
from infra.docker_shim import SOCKET_PATH

from chalicelib.cgroups import controller_dirs
from chalicelib.execute.backends.base import ContainerSpec
from chalicelib.execute.runtimes import PROVIDED, StartFailure

log = logging.getLogger("mk1.docker")

TASK_ROOT = "/var/task"
IMAGE_RUNTIME = "python3.11"    # Debian bookworm's Python, the image's (infra/image.py)
MANAGED_LABEL = "mk1.managed"
OWNER_PID_LABEL = "mk1.owner_pid"
OWNER_START_LABEL = "mk1.owner_start"  # with the pid: a reused pid is not mistaken for the owner
PIDS_LIMIT = 1024                      # Lambda's own limit on processes + threads
# Every live container holds two engine connections (log stream + wait); keep them pooled.
CLIENT_POOL_SIZE = 64


def engine_available(timeout_s: float = 2.0) -> bool:
    """True when a Docker engine answers (MK1_BACKEND=auto picks docker then)."""
    try:
        client = docker.from_env(timeout=timeout_s)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


class DockerHandle:
    restored = False

    def __init__(self, container, spec: ContainerSpec):
        self.container = container
        self.id = container.short_id
        self._spec = spec
        self._peak_mb: float | None = None
        self._memory_file: Path | None = None
        self._removed = False   # then the last reading stands: no cgroup left, no engine call to make
        # Found from the container's pid, which takes an engine call (reload, 10-30 ms): made now,
        # while the runtime starts, not on the first call's path.
        self._memory_lookup = threading.Thread(target=self._find_memory_file, daemon=True,
                                               name=f"mem-{spec.container_id}")
        self._memory_lookup.start()
        self._reader = threading.Thread(target=self._pump_output, daemon=True,
                                        name=f"out-{spec.container_id}")
        self._reader.start()

    def _find_memory_file(self) -> None:
        self._memory_file = _memory_peak_file(self.container)

    def _pump_output(self) -> None:
        pending = b""
        try:
            for chunk in self.container.logs(stream=True, follow=True, stdout=True, stderr=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self._spec.on_output(raw.decode("utf-8", "replace"))
        except DockerException:
            pass  # removed while streaming: nothing more to read
        if pending:
            self._spec.on_output(pending.decode("utf-8", "replace"))

    def wait(self) -> int:
        try:
            code = self.container.wait()["StatusCode"]
        except NotFound:
            code = 137  # removed from outside (e.g. `docker rm -f`): as good as killed
        self._reader.join(timeout=2)
        # The shim (PID 1) exits 128+N when awslambdaric dies of signal N; the engine reports
        # 137 for a container it killed. Report both as the process backend does: -N.
        return -(code - 128) if 128 < code <= 128 + 64 else code

    def kill(self) -> None:
        # A forced remove is SIGKILL and delete in one engine call (as fast as a plain kill):
        # once it returns nothing of the container is left, even if mk1 exits right after
        # a shutdown, before the monitor thread gets to remove().
        self.remove()

    def max_memory_mb(self) -> float | None:
        if self._removed:
            return self._peak_mb
        peak = self._cgroup_peak()
        if peak is None:
            peak = self._stats_peak()
        if peak is not None:
            self._peak_mb = max(self._peak_mb or 0.0, peak / (1024 * 1024))
        return self._peak_mb

    def _cgroup_peak(self) -> int | None:
        # Read on the call path after every invocation: a cgroup file costs microseconds,
        # the engine's stats API milliseconds. The file was looked up as the container started.
        self._memory_lookup.join()
        if self._memory_file is None:
            return None
        try:
            return int(self._memory_file.read_text())
        except (OSError, ValueError):  # the container has exited: its cgroup is gone
            return None

    def _stats_peak(self) -> int | None:
        # Where the cgroup is not visible (remote engine, other pid namespace).
        try:
            mem = self.container.stats(stream=False, one_shot=True).get("memory_stats") or {}
        except DockerException:
            return None
        return mem.get("max_usage") or mem.get("usage")

    def remove(self) -> None:
        gone = True
        try:
            self.container.remove(force=True)
        except NotFound:
            pass
        except APIError as e:
            if e.status_code != 409:  # 409: removal already in progress
                log.warning("%s: remove failed: %s", self.id, e)
                gone = False
        if gone:
            self._removed = True
        shutil.rmtree(self._spec.work_dir, ignore_errors=True)


def _command(spec: ContainerSpec) -> list[str]:
    """The image's shim runs awslambdaric on the image's Python, or a custom runtime's bootstrap."""
    if spec.runtime in PROVIDED:
        if not os.access(spec.code_dir / "bootstrap", os.X_OK):
            raise StartFailure("Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]",
                               "Runtime.InvalidEntrypoint")
        return ["--exec", f"{TASK_ROOT}/bootstrap"]
    if spec.runtime != IMAGE_RUNTIME:
        raise StartFailure(f"The runtime {spec.runtime} is not available in mk1's Docker image, which has "
                           f"{IMAGE_RUNTIME} (built offline from Debian's packages); run this function on "
                           f"the process backend (MK1_BACKEND=process), which uses the machine's Pythons.")
    return [spec.handler]


class DockerBackend:
    name = "docker"
    needs_socket = True

    def __init__(self, settings=None, client: docker.DockerClient | None = None):
        self._settings = settings  # mk1 Settings (MK1_HOME, MK1_DOCKER_BASE_IMAGE); None: from the environment
        self.client = client or docker.from_env(max_pool_size=CLIENT_POOL_SIZE)
        self._image: str | None = None
        self._image_lock = threading.Lock()
        self._snapstart_said: set[str] = set()

    @property
    def image(self) -> str | None:
        return self._image

    def prepare(self, progress: Callable[[str], None] = print) -> None:
        with self._image_lock:
            if self._image is None:
                self._image = image.ensure_image(self.client, progress, self._settings)

    def start(self, spec: ContainerSpec) -> DockerHandle:
        if spec.runtime_socket is None:
            raise ValueError("the docker backend needs spec.runtime_socket (needs_socket is True)")
        self.prepare(progress=log.info)
        if spec.snapshot_key is not None and spec.function_name not in self._snapstart_said:
            # Docker's own restore (`docker checkpoint`, CRIU) needs an --experimental engine and
            # CRIU, and failed where measured (docs/FUNCTIONS.md): a SnapStart version starts as
            # any other here, init and all.
            self._snapstart_said.add(spec.function_name)
            log.warning("%s: SnapStart has no restore on the docker backend (mk1 does not use the engine's "
                        "experimental checkpoint/restore; docs/FUNCTIONS.md says why): its environments start "
                        "with a full init (MK1_BACKEND=process restores)",
                        spec.function_name)
        uid, gid = _container_ids()
        code = spec.code_dir.stat()
        if code.st_uid != uid and code.st_mode & 0o005 != 0o005:
            # e.g. a tempfile.mkdtemp() directory (0700): awslambdaric would fail with a baffling
            # ImportModuleError; say what is wrong instead.
            raise PermissionError(f"{spec.code_dir} (mode {code.st_mode & 0o777:o}) is not readable by "
                                  f"the container's user {uid}; make it world-readable (0755)")
        spec.work_dir.mkdir(parents=True, exist_ok=True)
        os.chown(spec.work_dir, uid, gid)  # the container's /tmp: writable by its user, private
        env = {**spec.env,
               "PYTHONPATH": f"{TASK_ROOT}:{image.SITE_DIR}",
               "LAMBDA_TASK_ROOT": TASK_ROOT}  # spec.env has the host's path
        container = self.client.containers.create(
            self._image, command=_command(spec), name=f"mk1-{spec.container_id}",
            environment=env, labels=self.labels_for(spec.function_name, spec.container_id),
            network_mode="none", read_only=True, user=f"{uid}:{gid}",
            mem_limit=f"{spec.memory_mb}m", memswap_limit=f"{spec.memory_mb}m",  # no swap, as in Lambda
            pids_limit=PIDS_LIMIT, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            mounts=[Mount(TASK_ROOT, str(spec.code_dir.resolve()), type="bind", read_only=True),
                    Mount(SOCKET_PATH, str(spec.runtime_socket.resolve()), type="bind"),
                    Mount("/tmp", str(spec.work_dir.resolve()), type="bind")])
        try:
            container.start()
        except DockerException:
            # No handle will exist to remove() what was made, so undo it here.
            container.remove(force=True)
            shutil.rmtree(spec.work_dir, ignore_errors=True)
            raise
        return DockerHandle(container, spec)

    @staticmethod
    def labels_for(function_name: str, container_id: str) -> dict[str, str]:
        pid = os.getpid()
        return {MANAGED_LABEL: "true", "mk1.function": function_name, "mk1.container": container_id,
                OWNER_PID_LABEL: str(pid), OWNER_START_LABEL: _process_start(pid) or ""}

    def cleanup_orphans(self) -> int:
        """Remove mk1 containers whose owning process is gone; return how many."""
        removed = 0
        # ignore_removed: a container may vanish between the listing and its inspection.
        for c in self.client.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}=true"},
                                             ignore_removed=True):
            if _owner_alive(c.labels):
                continue
            try:
                c.remove(force=True)
                removed += 1
            except NotFound:
                pass
        if removed:
            log.info("removed %d orphaned mk1 container(s)", removed)
        return removed


def _container_ids() -> tuple[int, int]:
    # Never root inside. Where mk1 is not root itself, its own ids keep the files the
    # function leaves in /tmp deletable by mk1 afterwards.
    if os.getuid() == 0:
        return image.USER_ID, image.USER_ID
    return os.getuid(), os.getgid()


def _process_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before ")" may hold spaces


def _owner_alive(labels: dict[str, str]) -> bool:
    try:
        pid = int(labels.get(OWNER_PID_LABEL, ""))
    except ValueError:
        return False
    start, recorded = _process_start(pid), labels.get(OWNER_START_LABEL)
    return start is not None and (not recorded or recorded == start)


def _memory_peak_file(container) -> Path | None:
    """The cgroup file holding the container's peak memory (cgroup v2 or v1), via its init pid."""
    try:
        container.reload()
        pid = container.attrs["State"]["Pid"]
    except (DockerException, KeyError):
        return None
    for version, where in controller_dirs(Path(f"/proc/{pid}/cgroup"), "memory"):
        candidate = where / ("memory.peak" if version == 2 else "memory.max_usage_in_bytes")
        if candidate.exists():
            return candidate
    return None
