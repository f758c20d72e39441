"""The bench venv (.mk1/bench-venv): Ray Serve, matplotlib and py-spy, for the benchmark only.

Never mk1's .venv and never requirements.txt: the peer and the tooling are not part of mk1.
The Ray peer runs there as a subprocess (bench/ray_peer.py), talking HTTP on loopback.
"""
from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .harness import ROOT

VENV = ROOT / ".mk1" / "bench-venv"
PY = VENV / "bin" / "python"
PACKAGES = {"ray": ("ray[serve]", "import ray, ray.serve"),
            "matplotlib": ("matplotlib", "import matplotlib"),
            "py-spy": ("py-spy", None)}


def _has(name: str) -> bool:
    pkg, probe = PACKAGES[name]
    if not PY.exists():
        return False
    if probe is None:
        return (VENV / "bin" / name).exists()
    return subprocess.run([str(PY), "-c", probe], capture_output=True, timeout=120).returncode == 0


def ensure(names: list[str], log=print) -> dict[str, str | None]:
    """Install what is missing. Returns {name: None if usable, else the reason it is not}."""
    out: dict[str, str | None] = {}
    try:
        if not PY.exists():
            log(f"creating the bench venv {VENV.relative_to(ROOT)} (benchmark-only tools)")
            base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
            subprocess.run([base, "-m", "venv", str(VENV)], check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as e:
        return {n: f"cannot create {VENV}: {e}" for n in names}
    missing = [n for n in names if not _has(n)]
    if missing:
        specs = [PACKAGES[n][0] for n in missing]
        log(f"installing {' '.join(specs)} into the bench venv ...")
        t0 = time.monotonic()
        r = subprocess.run([str(PY), "-m", "pip", "install", "-q", *specs], capture_output=True, text=True,
                           timeout=900)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            log(f"  pip failed ({' | '.join(tail)})")
        else:
            log(f"  installed in {time.monotonic() - t0:.0f} s")
    for n in names:
        out[n] = None if _has(n) else f"`pip install {PACKAGES[n][0]}` into {VENV.relative_to(ROOT)} failed"
    return out


def version(pkg: str) -> str | None:
    if not PY.exists():
        return None
    r = subprocess.run([str(PY), "-c", f"import importlib.metadata as m; print(m.version({pkg!r}))"],
                       capture_output=True, text=True, timeout=60)
    return r.stdout.strip() or None


class RayPeer:
    """Ray Serve (bench/ray_peer.py) in a subprocess of the bench venv, on a loopback port."""

    def __init__(self, port: int, start_timeout_s: float = 180):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # Ray puts AF_UNIX sockets under its temp dir: keep it short.
        self.temp = Path(tempfile.mkdtemp(prefix="mk1ray-"))
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               "PYTHONUNBUFFERED": "1"}
        env.pop("VIRTUAL_ENV", None)
        self.log_path = ROOT / ".mk1" / "bench" / "ray-peer.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self.proc = subprocess.Popen([str(PY), str(ROOT / "bench" / "ray_peer.py"), str(port), str(self.temp),
                                      str(ROOT / "functions")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log_path.open("wb"), env=env, cwd=str(self.temp))
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = b""
        while time.monotonic() - t0 < start_timeout_s:
            if self.proc.poll() is not None:
                break
            if sel.select(timeout=1.0):
                line = self.proc.stdout.readline()
                if line.startswith(b"READY"):
                    break
        sel.close()
        if not line.startswith(b"READY"):
            self.stop()
            raise RuntimeError(f"the Ray peer did not start (see {self.log_path.relative_to(ROOT)})")
        self.start_s = time.monotonic() - t0

    def rss_mib(self) -> float | None:
        """RSS of the peer and all its descendants (Ray's raylet, GCS, workers, replicas)."""
        table = _process_table()
        if table is None:
            return None
        children, rss = table
        return round(sum(rss.get(p, 0) for p in self._tree(children)) / 1024, 1)

    def _tree(self, children: dict[int, list[int]]) -> list[int]:
        out, todo = [], [self.proc.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(children.get(p, []))
        return out

    def _descendants(self) -> list[int]:
        table = _process_table()
        return self._tree(table[0])[1:] if table is not None else []

    def stop(self) -> None:
        # Ray's daemons (GCS, raylet, dashboard, workers) outlive the peer's own process for a
        # while: wait for them too, so the next measurement does not share the cores with them.
        lingering = self._descendants() if self.proc.poll() is None else []
        self._stop_main()
        deadline = time.monotonic() + 30
        while lingering and time.monotonic() < deadline:
            lingering = [p for p in lingering if _running(p)]
            time.sleep(0.2)

    def _stop_main(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()   # ray_peer.py shuts Serve and Ray down on EOF
                self.proc.wait(60)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.terminate()
                try:
                    self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        shutil.rmtree(self.temp, ignore_errors=True)


def _process_table() -> tuple[dict[int, list[int]], dict[int, int]] | None:
    """Every process's children and RSS (KiB), from one `ps`."""
    try:
        r = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,rss="], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for line in r.stdout.splitlines():
        pid, ppid, kb = (int(x) for x in line.split())
        children.setdefault(ppid, []).append(pid)
        rss[pid] = kb
    return children, rss


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
