"""Supervision: `mk1 up` restarts a crashed dispatcher or AWS endpoint (provisioning the new endpoint
again), takes its children with it when it is killed outright, and `mk1 down` drains a running
stack or says that nothing runs.

Each test runs its own `mk1 up` (free ports, private MK1_HOME) and stops only processes it started
itself, by pid: `mk1 up`, and the children `mk1 up` started for it (their pids in MK1_HOME/*.pid).
"""
import configparser
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import boto3

from helpers import FAST, alive, descendants, free_port, wait_until
from infra import names, operator_key
from infra.embedded import command as moto_command, port_is_free
from my_mk1_homework import Function
from my_mk1_homework.stack import Backoff

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def alpha_says(prompt: str) -> str:
    return "[alpha] " + " ".join(reversed(prompt.split()))


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False



class Up:
    """One `mk1 up` on free ports with a private MK1_HOME, its output gathered as it comes."""

    def __init__(self, tmp_path: Path, ui: bool = False, **env: str):
        self.home = tmp_path / "home"
        self.ports = {"aws": free_port(), "dispatcher": free_port(), "ui": free_port()}
        self.env = {**{k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}, **FAST, **env,
                    "MK1_HOME": str(self.home), "MK1_AWS_PORT": str(self.ports["aws"]),
                    "MK1_DISPATCHER_PORT": str(self.ports["dispatcher"]), "MK1_UI_PORT": str(self.ports["ui"]),
                    "PYTHONUNBUFFERED": "1"}
        self.url = f"http://127.0.0.1:{self.ports['dispatcher']}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen([str(BIN / "mk1"), "up", *([] if ui else ["--no-ui"])], env=self.env,
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._gather, daemon=True).start()
        wait_until(self.output, lambda out: "Ctrl-C stops everything" in out or self.proc.poll() is not None,
                   timeout=120, what="mk1 up to say it is up")
        assert "Ctrl-C stops everything" in self.output(), self.output()

    def _gather(self) -> None:
        for line in self.proc.stdout:   # ends when mk1 up closes its output
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def said(self, *lines: str, timeout: float = 60) -> str:
        return wait_until(self.output, lambda out: all(x in out for x in lines), timeout=timeout,
                          what=f"mk1 up to say {lines}")

    def pid(self, name: str) -> int:
        return int((self.home / f"{name}.pid").read_text())

    def invoke(self, prompt: str, user: str = "user1") -> str | Exception:
        """RuntimeAlpha's answer, or what went wrong; the keys read afresh (a new AWS endpoint
        means new ones)."""
        cfg = configparser.ConfigParser()
        cfg.read(self.home / "credentials")
        try:
            fn = Function("RuntimeAlpha", user, access_key_id=cfg[user]["aws_access_key_id"],
                          secret_access_key=cfg[user]["aws_secret_access_key"], endpoint=self.url, read_timeout=60)
            return fn.generate(prompt)
        except Exception as e:   # noqa: BLE001 - the caller waits for a success
            return e

    def invokes_again(self, prompt: str, timeout: float = 30) -> None:
        wait_until(lambda: self.invoke(prompt), lambda r: r == alpha_says(prompt), timeout=timeout,
                   interval=0.2, what=f"RuntimeAlpha to answer {prompt!r}")

    def status(self) -> dict:
        with urllib.request.urlopen(self.url + "/mk1/status", timeout=10) as r:
            return json.load(r)

    def usage_log(self) -> list[dict]:
        path = self.home / "usage.log"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()   # its children die with it (PR_SET_PDEATHSIG)
                self.proc.wait()
        self.proc.stdout.close()


def test_backoff_doubles_to_its_cap_and_starts_over_after_a_stable_run():
    b = Backoff(first=0.5, cap=10, stable_s=30)
    assert [b.next(started=100, now=101) for _ in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert b.next(started=100, now=130) == 0.5   # up 30 s: a fresh crash, not a crash loop
    assert b.next(started=130, now=131) == 1


def test_a_killed_dispatcher_is_restarted(tmp_path):
    up = Up(tmp_path)
    try:
        assert up.invoke("before the crash") == alpha_says("before the crash")
        old = up.pid("dispatcher")
        os.kill(old, signal.SIGKILL)
        up.said("dispatcher exited (signal 9); restarting in 0.5 s", "dispatcher is back")
        assert up.pid("dispatcher") != old and not alive(old)
        up.invokes_again("after the crash")
        assert up.proc.poll() is None
    finally:
        up.stop()


def test_a_killed_aws_endpoint_is_restarted_and_provisioned_again(tmp_path):
    up = Up(tmp_path)
    try:
        assert up.invoke("before the crash") == alpha_says("before the crash")
        wait_until(up.usage_log, lambda rs: len(rs) == 1, what="the call's usage record in the usage log")
        moto, dispatcher = up.pid("moto"), up.pid("dispatcher")
        os.kill(moto, signal.SIGKILL)
        up.said("AWS endpoint (moto) exited (signal 9); restarting in 0.5 s", "restored 1 usage records",
                "AWS endpoint (moto) is back")
        assert up.pid("moto") != moto and not alive(moto)
        akid, secret = operator_key.ensure(up.home / "credentials")
        aws = {svc: boto3.client(svc, endpoint_url=f"http://127.0.0.1:{up.ports['aws']}", region_name="us-east-1",
                                 aws_access_key_id=akid, aws_secret_access_key=secret)
               for svc in ("lambda", "dynamodb")}
        conc = aws["lambda"].get_function_concurrency(FunctionName="RuntimeAlpha")
        assert conc["ReservedConcurrentExecutions"] == 3
        assert aws["dynamodb"].scan(TableName=names.USAGE_TABLE)["Count"] == 1   # re-seeded from the log
        up.invokes_again("after the crash")
        assert up.pid("dispatcher") == dispatcher   # it reconnects: no restart needed
        assert up.proc.poll() is None
    finally:
        up.stop()


def test_an_aws_endpoint_it_did_not_start_is_watched_and_provisioned_again(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def start_moto() -> subprocess.Popen:
        proc = subprocess.Popen(moto_command("127.0.0.1", port), stdout=(tmp_path / "moto.log").open("ab"),
                                stderr=subprocess.STDOUT)
        wait_until(lambda: answers(url + "/moto-api/") or proc.poll() is not None, timeout=30,
                   what="the test's own moto server to answer")
        return proc

    moto = start_moto()
    up = None
    try:
        up = Up(tmp_path, AWS_ENDPOINT_URL=url, MK1_EMBEDDED_AWS="never")
        assert up.invoke("before the crash") == alpha_says("before the crash")
        wait_until(up.usage_log, lambda rs: len(rs) == 1, what="the call's usage record in the usage log")
        moto.kill()
        moto.wait(10)
        up.said(f"AWS endpoint {url} does not answer; waiting for it", timeout=30)
        moto = start_moto()   # empty, like a LocalStack without persistence
        up.said(f"AWS endpoint {url} answers again", "restored 1 usage records", timeout=60)
        up.invokes_again("after the crash")
    finally:
        if up:
            up.stop()
        moto.kill()
        moto.wait(10)


def test_a_killed_mk1_up_takes_all_its_children_with_it(tmp_path):
    up = Up(tmp_path, ui=True)
    try:
        assert up.invoke("one warm container") == alpha_says("one warm container")
        family = descendants(up.proc.pid)
        assert {up.pid("moto"), up.pid("dispatcher"), up.pid("ui")} <= family
        assert len(family) >= 5   # moto's keeper, moto, the dispatcher, the UI, a container
    finally:
        up.proc.kill()
        up.proc.wait(10)
        up.proc.stdout.close()
    wait_until(lambda: sorted(p for p in family if alive(p)), lambda left: left == [], timeout=10,
               what="every process mk1 up started to exit")
    wait_until(lambda: sorted(port for port in up.ports.values() if not port_is_free("127.0.0.1", port)),
               lambda busy: busy == [], timeout=5, what="mk1's ports to be free")


def test_down_with_nothing_running_says_so_and_exits_0(tmp_path):
    env = {**os.environ, "MK1_HOME": str(tmp_path / "home")}
    r = subprocess.run([str(BIN / "mk1"), "down"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "not running" in r.stdout
    # A stale pid file naming a live process that is not `mk1 up`: not signalled, the file removed.
    (tmp_path / "home").mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        (tmp_path / "home" / "up.pid").write_text(str(other.pid))
        r = subprocess.run([str(BIN / "mk1"), "down"], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0 and "not running" in r.stdout, r.stderr
        assert other.poll() is None
        assert not (tmp_path / "home" / "up.pid").exists()
    finally:
        other.stdin.close()
        other.wait(10)


def test_down_drains_a_running_call_before_the_aws_endpoint_stops(tmp_path):
    up = Up(tmp_path, MK1_ALPHA_GENERATE_SECONDS="2")
    answer: list = []
    call = threading.Thread(target=lambda: answer.append(up.invoke("finish me please")))
    try:
        call.start()
        wait_until(up.status, lambda st: st["functions"].get("RuntimeAlpha", {}).get("in_use", 0) >= 1,
                   timeout=30, what="the call to be running")
        r = subprocess.run([str(BIN / "mk1"), "down"], env=up.env, cwd=ROOT, capture_output=True, text=True,
                           timeout=150)
        assert r.returncode == 0, r.stderr
        assert "mk1 stopped." in r.stdout
        call.join(60)
        assert answer == [alpha_says("finish me please")]
        assert up.proc.wait(30) == 0
        assert up.output().rstrip().endswith("stopped.")
    finally:
        up.stop()
    assert [(x["function"], x["status"]) for x in up.usage_log()] == [("RuntimeAlpha", "success")]
    # The dispatcher's last writes (its usage record, the call's log lines) found the endpoint up.
    assert "writing usage/logs failed" not in (up.home / "dispatcher.log").read_text()
    assert not (up.home / "up.pid").exists()


def test_a_killed_mk1_up_started_again_runs_every_accepted_call_once(tmp_path):
    """`mk1 up` itself killed (SIGKILL: everything it started dies with it) with Event calls running
    and queued, then `mk1 up` again, as an operator would: each accepted call runs exactly once, from
    the journals under MK1_HOME (the AWS endpoint came back with its state; the calls were re-queued)."""
    up = Up(tmp_path, MK1_ALPHA_GENERATE_SECONDS="0.4")
    cfg = configparser.ConfigParser()
    cfg.read(up.home / "credentials")
    fn = Function("RuntimeAlpha", "admin", access_key_id=cfg["admin"]["aws_access_key_id"],
                  secret_access_key=cfg["admin"]["aws_secret_access_key"], endpoint=up.url, read_timeout=60)
    try:
        ids = [fn.spawn(f"event {i}").request_id for i in range(8)]   # cap 3: some run, the rest wait
        wait_until(lambda: up.status()["functions"]["RuntimeAlpha"]["in_use"], lambda n: n >= 1,
                   what="calls running")
    finally:
        up.proc.kill()
        up.proc.wait(10)
        up.proc.stdout.close()
    wait_until(lambda: port_is_free("127.0.0.1", up.ports["dispatcher"]) and port_is_free("127.0.0.1", up.ports["aws"]),
               timeout=15, what="the killed stack's ports to be free")
    again = Up(tmp_path, MK1_ALPHA_GENERATE_SECONDS="0.4")
    try:
        def successes() -> dict:
            runs = [r for r in again.usage_log() if r["request_id"] in ids and r["status"] == "success"]
            return {rid: sum(1 for r in runs if r["request_id"] == rid) for rid in ids}
        wait_until(successes, lambda c: all(c.values()), timeout=60, what="every accepted call to have run")
        wait_until(lambda: again.status()["functions"]["RuntimeAlpha"], lambda f: not f["in_use"] and not f["waiting"],
                   timeout=30, what="nothing left running or waiting")
        assert set(successes().values()) == {1}, successes()
    finally:
        again.stop()


def test_the_aws_endpoint_logs_no_line_per_request_unless_asked(tmp_path):
    """The dispatcher reads the control plane every second: a line per request in moto.log was ~70 MB
    a day from an idle mk1, in a file nothing rotates. MK1_LOG_LEVEL=DEBUG keeps them."""
    logged = {}
    for level in ("INFO", "DEBUG"):
        port, log = free_port(), tmp_path / f"moto-{level}.log"
        env = {**os.environ, "MK1_LOG_LEVEL": level}
        env.pop("MK1_HOME", None)   # a throwaway server: no gate, no journal
        proc = subprocess.Popen(moto_command("127.0.0.1", port), stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                env=env)
        try:
            wait_until(lambda: answers(f"http://127.0.0.1:{port}/moto-api/") or proc.poll() is not None,
                       timeout=30, what="moto to answer")
            for _ in range(20):
                answers(f"http://127.0.0.1:{port}/moto-api/")
        finally:
            proc.terminate()
            proc.wait(10)
        logged[level] = log.read_text(errors="replace").count("GET /moto-api/")
    assert logged["INFO"] == 0 and logged["DEBUG"] >= 20
