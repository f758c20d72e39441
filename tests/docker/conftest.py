"""Shared fixtures of the Docker backend tests: a real engine, the real image, real pools.

Without an engine the tests skip on a developer's machine, but fail under CI
(CI set), where .ci/start-dockerd.sh must have started one. Helpers are handed
to the tests as fixtures: `from conftest import ...` could pick another suite's conftest.
Waiting goes through tests/helpers.py's `wait_until`, like every other suite.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import textwrap
import threading
import uuid
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from chalicelib.assign.pool import FunctionPool
from chalicelib.execute.backends.docker import MANAGED_LABEL, OWNER_PID_LABEL, DockerBackend, engine_available
from chalicelib.model import FunctionConfig, Invocation
from helpers import wait_until
from infra import package

# A test function that reports on the sandbox it runs in.
PROBE_SOURCE = textwrap.dedent('''
    import os, time

    def handler(event, context):
        probe = event["probe"]
        if probe == "net":
            return sorted(os.listdir("/sys/class/net"))
        if probe == "ids":
            return {"uid": os.getuid(), "gid": os.getgid()}
        if probe == "write":
            with open("/tmp/ok", "w") as f:
                f.write("fine")
            try:
                open("/etc/x", "w").close()
                return {"etc": "written"}
            except OSError as e:
                return {"etc": e.errno, "tmp": open("/tmp/ok").read()}
        if probe == "env":
            return {k: os.environ.get(k) for k in ("LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_NAME")}
        if probe == "sleep":   # a handler busy for a while, on purpose: the tests act while it runs
            print("sleeping", flush=True)
            time.sleep(event["seconds"])
            return "slept"
        raise ValueError(probe)
''')


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


@pytest.fixture(scope="session")
def docker_backend() -> DockerBackend:
    if not engine_available():
        message = "no Docker engine answers (start one with .ci/start-dockerd.sh)"
        if _ci():
            pytest.fail(f"CI: {message}")
        pytest.skip(message)
    backend = DockerBackend()
    backend.prepare(progress=lambda line: print(f"[image] {line}"))  # cached after the first build
    return backend


@pytest.fixture(scope="session")
def scratch() -> Iterator[Path]:
    # Short on purpose: the Runtime API sockets live below it (AF_UNIX paths max 107 bytes).
    root = Path(tempfile.mkdtemp(prefix="mk1d-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _code_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    path.chmod(0o755)  # the container's non-root user reads it through the bind mount
    return path


@pytest.fixture(scope="session")
def alpha_code(scratch: Path) -> Path:
    code = _code_dir(scratch / "code-alpha")
    zipfile.ZipFile(io.BytesIO(package.build_zip("RuntimeAlpha"))).extractall(code)
    return code


@pytest.fixture(scope="session")
def probe_code(scratch: Path) -> Path:
    code = _code_dir(scratch / "code-probe")
    (code / "probe.py").write_text(PROBE_SOURCE)
    return code


def _config(name: str, handler: str, *, timeout_s: float = 10, memory_mb: int = 256,
           env: dict | None = None, code_sha: str = "sha-1") -> FunctionConfig:
    return FunctionConfig(name, f"arn:aws:lambda:us-east-1:000000000000:function:{name}", code_sha,
                          handler, "python3.11", timeout_s, memory_mb, env or {}, None)


@pytest.fixture
def make_pool(docker_backend: DockerBackend, scratch: Path):
    pools = []

    def make(name: str, code_dir: Path) -> FunctionPool:
        pool = FunctionPool(name, docker_backend, lambda cfg: code_dir, scratch / "work")
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.shutdown()


def _invocation(cfg: FunctionConfig, event: dict) -> Invocation:
    return Invocation(str(uuid.uuid4()), json.dumps(event).encode(), cfg.arn, "Root=1-test")


def _invoke(pool: FunctionPool, cfg: FunctionConfig, event: dict):
    return pool.run(_invocation(cfg, event), cfg)


class Call:
    """A call running in a thread, for tests that act while its handler runs."""

    def __init__(self, pool: FunctionPool, cfg: FunctionConfig, event: dict):
        self.inv = _invocation(cfg, event)
        self._result: dict = {}
        self._thread = threading.Thread(target=lambda: self._result.update(value=pool.run(self.inv, cfg)),
                                        daemon=True)
        self._thread.start()

    def wait_for_output(self, text: str, timeout_s: float = 10) -> None:
        wait_until(lambda: list(self.inv.logs), lambda lines: any(text in line for line in lines), timeout=timeout_s,
                   what=f"the handler to print {text!r}")

    def result(self, timeout_s: float = 10):
        self._thread.join(timeout_s)
        return self._result["value"]


def _mk1_containers(backend: DockerBackend, **labels: str) -> list:
    """This test process's mk1 containers (not those of an mk1 running beside the tests)."""
    wanted = {MANAGED_LABEL: "true", OWNER_PID_LABEL: str(os.getpid()), **labels}
    return backend.client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in wanted.items()]},
                                          ignore_removed=True)


@pytest.fixture
def fn_config():
    return _config


@pytest.fixture
def invoke():
    return _invoke


@pytest.fixture
def mk1_containers(docker_backend: DockerBackend):
    return lambda **labels: _mk1_containers(docker_backend, **labels)


@pytest.fixture
def start_call():
    return Call
