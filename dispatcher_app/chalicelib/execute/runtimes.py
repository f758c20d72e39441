"""Which program a container runs for a function's declared runtime (process backend).

- `python3.X`: that interpreter running awslambdaric over the handler. The dispatcher's own
  Python has awslambdaric already; for another CPython found on this machine (PATH, pyenv),
  the same awslambdaric version is installed once under MK1_RUNTIMES_DIR. Never silently the
  dispatcher's Python: a runtime this machine lacks fails with a message that says so.
- `provided.al2023`, `provided.al2`, `provided`: the function's own executable `bootstrap`,
  which speaks the Runtime API itself (AWS's custom runtimes).
"""
from __future__ import annotations

import functools
import glob
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path

log = logging.getLogger("mk1.runtimes")

PROVIDED = ("provided.al2023", "provided.al2", "provided")
_PYTHON = re.compile(r"^python(3\.\d+)$")
INSTALL_TIMEOUT_S = 300


class StartFailure(Exception):
    """A container cannot start for its runtime: Lambda's errorType and a message saying why."""

    def __init__(self, message: str, error_type: str = "Runtime.InvalidRuntime"):
        super().__init__(message)
        self.error_type = error_type


class Runtimes:
    def __init__(self, runtimes_dir: Path):
        self.dir = runtimes_dir
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def command(self, runtime: str, handler: str, code_dir: Path) -> tuple[list[str], dict[str, str]]:
        """(argv, extra environment) for a container of `runtime`."""
        if runtime in PROVIDED:
            return [str(_bootstrap(code_dir))], {}
        m = _PYTHON.match(runtime)
        if m is None:
            raise StartFailure(f"The runtime {runtime} is not supported by mk1, which runs python3.x "
                               f"and custom runtimes ({', '.join(PROVIDED)}).")
        version = m.group(1)
        if version == f"{sys.version_info.major}.{sys.version_info.minor}":
            return [sys.executable, "-u", "-m", "awslambdaric", handler], {}
        python = find_python(version)
        if python is None:
            raise StartFailure(
                f"The runtime {runtime} is not available on this machine: no python{version} interpreter "
                f"was found on PATH or in pyenv. Install it (e.g. `pyenv install {version}`) or deploy the "
                f"function with a runtime this machine has: {', '.join(available_pythons())}.")
        site = self._client_for(version, python)
        return [python, "-u", "-m", "awslambdaric", handler], {"PYTHONPATH": f"{code_dir}{os.pathsep}{site}"}

    def _client_for(self, version: str, python: str) -> Path:
        """awslambdaric for that interpreter (it has a native part built per CPython version)."""
        ric = metadata.version("awslambdaric")
        site = self.dir / f"python{version}" / f"awslambdaric-{ric}"
        with self._guard:
            lock = self._locks.setdefault(version, threading.Lock())
        with lock:
            if (site / ".installed").exists():
                return site
            log.info("installing awslambdaric %s for python%s into %s (once)", ric, version, site)
            tmp = site.with_name(site.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q",
                   "--target", str(tmp), f"awslambdaric=={ric}"]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise StartFailure(f"python{version}: installing the Lambda runtime client failed: {e}") from e
            if done.returncode != 0:
                raise StartFailure(f"python{version}: installing the Lambda runtime client (awslambdaric {ric}) "
                                   f"failed: {done.stderr.strip()[-500:]}")
            (tmp / ".installed").touch()
            shutil.rmtree(site, ignore_errors=True)
            tmp.rename(site)
            return site


def with_exec_wrapper(argv: list[str], runtime: str, env: dict[str, str], task_root: Path | None = None) -> list[str]:
    """AWS_LAMBDA_EXEC_WRAPPER: a managed runtime starts through the wrapper, which gets the runtime's
    command line as its arguments (custom runtimes ignore it, as on AWS). Through the shell, so a
    missing wrapper ends as on AWS: the runtime exits with status 127 (126: not executable). On the
    process backend /var/task/ names the function's unpacked code (LAMBDA_TASK_ROOT)."""
    wrapper = env.get("AWS_LAMBDA_EXEC_WRAPPER")
    if not wrapper or runtime in PROVIDED:
        return argv
    if task_root is not None and wrapper.startswith("/var/task/"):
        wrapper = str(task_root / wrapper.removeprefix("/var/task/"))
    return ["/bin/sh", "-c", 'exec "$@"', "sh", wrapper, *argv]


def _bootstrap(code_dir: Path) -> Path:
    path = code_dir / "bootstrap"
    if not path.is_file() or not os.access(path, os.X_OK):
        # AWS's words for a custom runtime without an executable bootstrap.
        raise StartFailure("Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]",
                           "Runtime.InvalidEntrypoint")
    return path


@functools.lru_cache(maxsize=None)
def find_python(version: str) -> str | None:
    """An interpreter of exactly that version: on PATH, else in pyenv's versions folder."""
    candidates = [shutil.which(f"python{version}")]
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"), reverse=True)
    for c in candidates:
        if c and _is_version(c, version):
            return c
    return None


def _is_version(python: str, version: str) -> bool:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def available_pythons() -> list[str]:
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = {own}
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for path in glob.glob(f"{root}/versions/3.*/bin/python3.*"):
        m = re.search(r"python(3\.\d+)$", path)
        if m:
            found.add(m.group(1))
    return [f"python{v}" for v in sorted(found, key=lambda v: int(v.split(".")[1]))]
