"""`mk1 up`: the whole system on this machine, in the order it depends on itself, kept running.

    embedded AWS (moto) -> provisioning -> usage re-seed -> dispatcher -> UI

Each part is a child process of `mk1 up`, its pid in MK1_HOME/<part>.pid while it runs. A part
that exits is started again after a backoff (0.5 s doubling to 10 s, back to 0.5 s once it has
stayed up 30 s). The embedded AWS keeps everything in memory, so a restarted one is provisioned
and re-seeded from the usage log before anything that needs it is restarted. Ctrl-C, SIGTERM or
`mk1 down` stop the dispatcher first (it drains running calls, containers, queues and usage
records), then the UI, then the AWS endpoint. Killed outright, `mk1 up` still takes its children
with it (`_die_with_parent`).
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from infra import aws, embedded
from infra.embedded import PortInUse, Stopped, port_is_free, wait_http  # Stopped: `mk1 up` asked to stop mid-start
from infra.provision import provision

from . import settings as settings_mod
from .settings import PROJECT_ROOT, Settings

UI_SCRIPT = PROJECT_ROOT / "ui" / "app.py"
POLL_S = 0.25           # how often `mk1 up` looks at its children
AWS_PROBE_S = 2.0       # how often an AWS endpoint mk1 did not start is asked whether it answers
DRAIN_S = 60.0          # the dispatcher's stop: up to 10 s of running calls, 15 s of records, slack
PR_SET_PDEATHSIG = 1


class Backoff:
    """How long to wait before restarting a part that exited: pure, over the times it is given.

    >>> b = Backoff(); [b.next(started=0, now=1) for _ in range(3)], b.next(started=0, now=40)
    ([0.5, 1.0, 2.0], 0.5)
    """

    def __init__(self, first: float = 0.5, cap: float = 10.0, stable_s: float = 30.0):
        self.first, self.cap, self.stable_s = first, cap, stable_s
        self._delay = first

    def next(self, started: float, now: float) -> float:
        if now - started >= self.stable_s:
            self._delay = self.first   # it stayed up a while: this exit is news, not a crash loop
        delay, self._delay = self._delay, min(self._delay * 2, self.cap)
        return delay


def _die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A preexec_fn: the child gets `sig` when its parent dies, even by SIGKILL.

    Why PR_SET_PDEATHSIG and not a process group that a watchdog kills: the kernel sends it, so
    no process has to outlive `mk1 up` to do it (a watchdog is one more process that `kill -9` or
    the OOM killer can take first, leaving the rest running) and nothing has to learn the pid of
    each restarted child. What a watchdog would add is order, and order matters: moto signalled
    at the same moment as the dispatcher leaves the dispatcher retrying its last writes to a dead
    endpoint until its recorder gives up (15 s, measured). So the embedded AWS runs under a keeper
    (`keep`): the keeper gets SIGTERM when `mk1 up` dies and then waits for the dispatcher to
    finish draining before it stops moto; moto gets SIGTERM when the keeper dies. Every link is a
    death signal, so nothing outlives `mk1 up` even if the keeper is killed too. Caveats: the
    signal follows the *thread* that forked, so children are started from the main thread only;
    a parent that died before prctl took effect is caught by the getppid check.
    """
    libc = ctypes.CDLL(None, use_errno=True)   # loaded before the fork, not in the child
    parent = os.getpid()

    def apply() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return apply


def _child_env(s: Settings) -> dict:
    env = dict(os.environ)
    env["MK1_HOME"] = str(s.home)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if s.embedded_aws:
        env["AWS_ENDPOINT_URL"] = s.aws_endpoint
    return env


def _answers(url: str, timeout: float = 2.0) -> bool:
    """Any HTTP answer counts (an AWS endpoint answers a bare GET with an error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class Child:
    """One process `mk1 up` keeps running, its output in MK1_HOME/<name>.log."""

    def __init__(self, name: str, title: str, argv: list[str], s: Settings,
                 ready_url: str | None = None, ready_timeout: float = 120, writes_pid: bool = True):
        self.name, self.title, self.argv, self.s = name, title, argv, s
        self.ready_url, self.ready_timeout = ready_url, ready_timeout
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.problem: str | None = None   # why the last start failed
        self.backoff = Backoff()
        self.pid_file = s.home / f"{name}.pid"   # the served process's pid (with a keeper, the keeper writes it)
        self.writes_pid = writes_pid

    def start(self, stop: threading.Event) -> None:
        self.problem = None
        with (self.s.home / f"{self.name}.log").open("ab") as log:   # the child keeps its own copy
            self.proc = subprocess.Popen(self.argv, env=_child_env(self.s), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT, start_new_session=True,
                                         preexec_fn=_die_with_parent())
        self.started_at = time.monotonic()
        if self.writes_pid:
            self.pid_file.write_text(str(self.proc.pid))
        if self.ready_url:
            wait_http(self.ready_url, self.ready_timeout, self.proc, stop)

    def ended(self) -> str | None:
        """None while it runs; else how it ended, e.g. "exited (signal 9)"."""
        if self.problem:
            return f"did not start ({self.problem})"
        code = None if self.proc is None else self.proc.poll()
        if code is None:
            return None
        return f"exited (signal {-code})" if code < 0 else f"exited (code {code})"

    def failed(self, problem: str) -> None:
        self.stop(5)
        self.problem = problem

    def stop(self, timeout: float) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return   # never started: the pid file, if any, is another mk1 up's
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.writes_pid:
            self.pid_file.unlink(missing_ok=True)


class Stack:
    def __init__(self, s: Settings, progress=print, ui: bool = True):
        self.s, self.progress = s, progress
        keeper = [sys.executable, "-m", "my_mk1_homework.stack", "keep", str(s.home / "dispatcher.pid"),
                  str(s.home / "moto.pid"), "--", *embedded.command(s.MK1_AWS_HOST, s.MK1_AWS_PORT)]
        self.aws = Child("moto", "AWS endpoint (moto)", keeper, s, f"{s.aws_endpoint}/moto-api/", 30,
                         writes_pid=False) if s.embedded_aws else None
        self.dispatcher = Child("dispatcher", "dispatcher", [sys.executable, "-m", "chalicelib.edge.server"], s,
                                f"{s.dispatcher_url}/health", 120)
        self.ui = Child("ui", "UI", [sys.executable, "-m", "streamlit", "run", str(UI_SCRIPT),
                                     "--server.address", s.MK1_DISPATCHER_HOST, "--server.port", str(s.MK1_UI_PORT),
                                     "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                        s) if ui else None
        self._aws_answers, self._next_probe = True, 0.0   # an AWS endpoint mk1 did not start

    def say(self, line: str) -> None:
        self.progress(line)
        sys.stdout.flush()

    def start(self, stop: threading.Event) -> "Stack":
        s = self.s
        s.home.mkdir(parents=True, exist_ok=True)
        self._check_free()
        (s.home / "up.pid").write_text(str(os.getpid()))
        if self.aws:
            self.say(f"[1/4] starting the embedded AWS (moto) on {s.aws_endpoint} ...")
            self.aws.start(stop)
        else:
            self.say(f"[1/4] using the AWS endpoint {s.aws_endpoint}")
        self.say("[2/4] provisioning IAM users, queues, tables, log groups and functions ...")
        self._provision(stop)
        self.say(f"[3/4] starting the dispatcher on {s.dispatcher_url} ...")
        self.dispatcher.start(stop)
        if self.ui:
            self.say(f"[4/4] starting the UI on http://{s.MK1_DISPATCHER_HOST}:{s.MK1_UI_PORT} ...")
            self.ui.start(stop)
        return self

    def _check_free(self) -> None:
        s = self.s
        running = running_up_pid(s.home)
        if running:
            raise PortInUse(f"mk1 up is already running for {s.home} (pid {running}); stop it with `mk1 down`.")
        if self.aws and not port_is_free(s.MK1_AWS_HOST, s.MK1_AWS_PORT):
            raise PortInUse(f"port {s.MK1_AWS_PORT} on {s.MK1_AWS_HOST} is in use: another AWS endpoint "
                            f"(or an earlier mk1) runs there. Stop it or set MK1_AWS_PORT.")
        ports = [("dispatcher", s.MK1_DISPATCHER_PORT)] + ([("UI", s.MK1_UI_PORT)] if self.ui else [])
        for what, port in ports:
            if not port_is_free(s.MK1_DISPATCHER_HOST, port):
                raise PortInUse(f"port {port} for the {what} is in use (an earlier `make up`?). "
                                f"Stop it, or choose another with MK1_{what.upper()}_PORT.")

    def _provision(self, stop: threading.Event) -> None:
        provision(self.s)
        self._reseed()
        if stop.is_set():
            raise Stopped()

    def _reseed(self) -> None:
        from chalicelib.record.usage import reseed_from_log
        n = reseed_from_log(aws.client(self.s, "dynamodb"), self.s.usage_log)
        if n:
            self.say(f"      restored {n} usage records from {self.s.usage_log}")

    # -- supervision --
    def supervise(self, stop: threading.Event) -> None:
        """Until `stop` is set, restart what exited: the AWS endpoint (and its provisioning) first,
        since neither the dispatcher nor the UI can start without it."""
        try:
            while not stop.wait(POLL_S):
                if not self._aws_ok(stop):
                    continue
                for child in (self.dispatcher, self.ui):
                    if child and child.ended():
                        self._restart(child, stop)
        except Stopped:
            pass

    def _restart(self, child: Child, stop: threading.Event, then: Callable[[], None] | None = None) -> bool:
        delay = child.backoff.next(child.started_at, time.monotonic())
        self.say(f"{child.title} {child.ended()}; restarting in {delay:g} s")
        if stop.wait(delay):
            raise Stopped()
        try:
            child.start(stop)
            if then:
                then()
        except Stopped:
            raise
        except Exception as e:
            child.failed(f"{type(e).__name__}: {e}")
            self.say(f"{child.title} did not come back: {e}")
            return False
        self.say(f"{child.title} is back (pid {child.pid_file.read_text().strip()})")
        return True

    def _aws_ok(self, stop: threading.Event) -> bool:
        if self.aws is None:
            return self._external_aws_ok(stop)
        if not self.aws.ended():
            return True
        return self._restart(self.aws, stop, then=lambda: self._reprovision(stop))

    def _reprovision(self, stop: threading.Event) -> None:
        self.say("      provisioning it again (it starts empty) ...")
        self._provision(stop)

    def _external_aws_ok(self, stop: threading.Event) -> bool:
        """An endpoint mk1 did not start (LocalStack, AWS): noticed, never restarted; provisioned
        again once it answers (a LocalStack without persistence comes back empty)."""
        now = time.monotonic()
        if now < self._next_probe:
            return self._aws_answers
        self._next_probe = now + AWS_PROBE_S
        answers = _answers(self.s.aws_endpoint)
        if answers == self._aws_answers:
            return answers
        self._aws_answers = answers
        if not answers:
            self.say(f"AWS endpoint {self.s.aws_endpoint} does not answer; waiting for it")
            return False
        self.say(f"AWS endpoint {self.s.aws_endpoint} answers again")
        try:
            self._reprovision(stop)
        except Stopped:
            raise
        except Exception as e:
            self.say(f"      provisioning failed ({type(e).__name__}: {e}); trying again")
            self._aws_answers = False
            return False
        return True

    def backend(self) -> str:
        try:
            with urllib.request.urlopen(f"{self.s.dispatcher_url}/health", timeout=2) as r:
                return json.loads(r.read()).get("backend", "?")
        except Exception:
            return "?"

    def stop(self) -> None:
        """The dispatcher first (SIGTERM: it drains into the AWS endpoint), then the UI, then that endpoint."""
        self.dispatcher.stop(DRAIN_S)
        if self.ui:
            self.ui.stop(10)
        if self.aws:
            self.aws.stop(15)
        pid_file = self.s.home / "up.pid"
        if pid_file.exists() and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()


def run_up(s: Settings | None = None, ui: bool = True) -> int:
    s = s or settings_mod.load()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    stack = Stack(s, ui=ui)
    try:
        stack.start(stop)
    except Stopped:
        pass
    except Exception as e:
        print(f"mk1 up failed: {e}", file=sys.stderr)
        stack.stop()
        return 1
    else:
        print(f"\nmk1 is up (backend: {stack.backend()})\n"
              f"  dispatcher (Lambda Invoke API)  {s.dispatcher_url}\n"
              + (f"  UI                              http://{s.MK1_DISPATCHER_HOST}:{s.MK1_UI_PORT}\n" if ui else "")
              + f"  AWS API (awslocal)              {s.aws_endpoint}\n"
              f"  credentials                     {s.credentials_file}\n"
              f"  usage log                       {s.usage_log}\n"
              "Ctrl-C stops everything.", flush=True)
        stack.supervise(stop)
    print("stopping mk1 (the dispatcher drains first) ...", flush=True)
    stack.stop()
    print("stopped.", flush=True)
    return 0


def _live_pid(pid_file: Path, is_it: Callable[[list[str]], bool]) -> int | None:
    """The pid in `pid_file` if that process is alive (not a zombie) and `is_it(its argv)`: a pid
    file can outlive its process, and the pid be reused by another."""
    try:
        pid = int(pid_file.read_text().strip())
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if state != "Z" and is_it(args) else None


def running_up_pid(home: Path) -> int | None:
    return _live_pid(home / "up.pid", lambda args: "up" in args[1:] and any("mk1" in a for a in args))


def run_down(s: Settings | None = None, timeout: float = 120) -> int:
    """Signal the running `mk1 up` to stop and wait for it; nothing running is not an error."""
    s = s or settings_mod.load()
    pid = running_up_pid(s.home)
    if pid is None:
        (s.home / "up.pid").unlink(missing_ok=True)   # stale, if there was one
        print(f"mk1 is not running (for {s.home}); nothing to stop.")
        return 0
    print(f"stopping mk1 up (pid {pid}); the dispatcher drains its running calls first ...", flush=True)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while running_up_pid(s.home) == pid:   # it removes the pid file as it ends
        if time.monotonic() > deadline:
            print(f"mk1 up (pid {pid}) is still stopping after {timeout:.0f} s; "
                  f"see {s.home}/dispatcher.log", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print("mk1 stopped.")
    return 0


# -- the embedded AWS's keeper: `python -m my_mk1_homework.stack keep AFTER OWN -- COMMAND ...` --
def _exit_as(returncode: int) -> int:
    if returncode < 0:   # killed: be killed the same way, so that `mk1 up` can say how
        if -returncode != signal.SIGKILL:
            signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    return returncode


def keep(after: Path, own_pid_file: Path, argv: list[str]) -> int:
    """Run `argv` (the moto server) until told to stop; then stop it once the process in `after`
    (the dispatcher) is gone, so that the dispatcher drains into a live endpoint even when
    `mk1 up` was killed outright (see `_die_with_parent`). Exits as the server did if it exits."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent())
    own_pid_file.write_text(str(proc.pid))
    while not stop.wait(0.1):
        if proc.poll() is not None:
            return _exit_as(proc.returncode)
    deadline = time.monotonic() + DRAIN_S
    while _live_pid(after, lambda args: "chalicelib.edge.server" in args) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if own_pid_file.exists() and own_pid_file.read_text().strip() == str(proc.pid):
        own_pid_file.unlink()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 5 and sys.argv[1] == "keep" and sys.argv[4] == "--":
        sys.exit(keep(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[5:]))
    sys.exit("usage: python -m my_mk1_homework.stack keep AFTER_PID_FILE OWN_PID_FILE -- COMMAND ...")
