"""`mk1 up`: the whole system on this machine, in the order it depends on itself.

    embedded AWS (moto) -> provisioning -> usage re-seed -> dispatcher -> UI

Each part is a child process of `mk1 up`; Ctrl-C or SIGTERM stops them all (the
dispatcher drains its containers, queues and usage records first).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from infra import aws
from infra.embedded import EmbeddedAWS, PortInUse, port_is_free, wait_http
from infra.provision import provision

from . import settings as settings_mod
from .settings import PROJECT_ROOT, Settings

UI_SCRIPT = PROJECT_ROOT / "ui" / "app.py"


def _child_env(s: Settings) -> dict:
    env = dict(os.environ)
    env["MK1_HOME"] = str(s.home)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if s.embedded_aws:
        env["AWS_ENDPOINT_URL"] = s.aws_endpoint
    return env


class Stack:
    def __init__(self, s: Settings, progress=print, ui: bool = True):
        self.s, self.progress, self.with_ui = s, progress, ui
        self.aws: EmbeddedAWS | None = None
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self) -> "Stack":
        s = self.s
        s.home.mkdir(parents=True, exist_ok=True)
        ports = [("dispatcher", s.MK1_DISPATCHER_HOST, s.MK1_DISPATCHER_PORT)]
        if self.with_ui:
            ports.append(("UI", s.MK1_DISPATCHER_HOST, s.MK1_UI_PORT))
        for what, host, port in ports:
            if not port_is_free(host, port):
                raise PortInUse(f"port {port} for the {what} is in use (an earlier `make up`?). "
                                f"Stop it, or choose another with MK1_{what.upper()}_PORT.")
        if s.embedded_aws:
            self.progress(f"[1/4] starting the embedded AWS (moto) on {s.aws_endpoint} ...")
            self.aws = EmbeddedAWS(s).start()
        else:
            self.progress(f"[1/4] using the AWS endpoint {s.aws_endpoint}")
        self.progress("[2/4] provisioning IAM users, queues, tables, log groups and functions ...")
        provision(s)
        self._reseed()
        self.progress(f"[3/4] starting the dispatcher on {s.dispatcher_url} ...")
        log = (s.home / "dispatcher.log").open("ab")
        self._spawn("dispatcher", [sys.executable, "-m", "chalicelib.edge.server"], log)
        wait_http(f"{s.dispatcher_url}/health", 120, self.children[-1][1])
        if self.with_ui:
            self.progress(f"[4/4] starting the UI on http://{s.MK1_DISPATCHER_HOST}:{s.MK1_UI_PORT} ...")
            self._spawn("ui", [sys.executable, "-m", "streamlit", "run", str(UI_SCRIPT),
                               "--server.address", s.MK1_DISPATCHER_HOST, "--server.port", str(s.MK1_UI_PORT),
                               "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                        (s.home / "ui.log").open("ab"))
        (s.home / "up.pid").write_text(str(os.getpid()))
        return self

    def _reseed(self) -> None:
        from chalicelib.record.usage import reseed_from_log
        n = reseed_from_log(aws.client(self.s, "dynamodb"), self.s.usage_log)
        if n:
            self.progress(f"      restored {n} usage records from {self.s.usage_log}")

    def _spawn(self, name: str, argv: list[str], log) -> None:
        proc = subprocess.Popen(argv, env=_child_env(self.s), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT, start_new_session=True)
        self.children.append((name, proc))

    def backend(self) -> str:
        try:
            with urllib.request.urlopen(f"{self.s.dispatcher_url}/health", timeout=2) as r:
                return json.loads(r.read()).get("backend", "?")
        except Exception:
            return "?"

    def stop(self) -> None:
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.children):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.children.clear()
        if self.aws:
            self.aws.stop()
        pid_file = self.s.home / "up.pid"
        if pid_file.exists() and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()

    def failed_child(self) -> str | None:
        for name, proc in self.children:
            if proc.poll() is not None:
                return f"the {name} exited with code {proc.returncode} (see {self.s.home}/{name}.log)"
        return None


def run_up(s: Settings | None = None, ui: bool = True) -> int:
    s = s or settings_mod.load()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = Stack(s, ui=ui)
    try:
        stack.start()
    except Exception as e:
        print(f"mk1 up failed: {e}", file=sys.stderr)
        stack.stop()
        return 1
    print(f"\nmk1 is up (backend: {stack.backend()})\n"
          f"  dispatcher (Lambda Invoke API)  {s.dispatcher_url}\n"
          + (f"  UI                              http://{s.MK1_DISPATCHER_HOST}:{s.MK1_UI_PORT}\n" if ui else "")
          + f"  AWS API (awslocal)              {s.aws_endpoint}\n"
          f"  credentials                     {s.credentials_file}\n"
          f"  usage log                       {s.usage_log}\n"
          "Ctrl-C stops everything.", flush=True)
    while not stop.wait(1.0):
        problem = stack.failed_child()
        if problem:
            print(f"mk1: {problem}; stopping", file=sys.stderr)
            break
    print("stopping mk1 ...", flush=True)
    stack.stop()
    print("stopped.")
    return 0


def run_down(s: Settings | None = None) -> int:
    s = s or settings_mod.load()
    pid_file = s.home / "up.pid"
    if not pid_file.exists():
        print("mk1 is not running (no .mk1/up.pid)", file=sys.stderr)
        return 1
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink()
        print("mk1 was not running (stale pid file removed)", file=sys.stderr)
        return 1
    for _ in range(600):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    print("mk1 stopped.")
    return 0
