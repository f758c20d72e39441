"""`mk1 up` (what `make up` runs): brings everything up, answers awslocal, stops cleanly."""
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from helpers import FAST, alive, descendants, free_port, operator_env, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent



def up_env(tmp_path):
    return {**os.environ, **FAST, "MK1_HOME": str(tmp_path / "home"), "MK1_AWS_PORT": str(free_port()),
            "MK1_DISPATCHER_PORT": str(free_port()), "MK1_UI_PORT": str(free_port())}


def test_up_provisions_serves_and_stops_everything(tmp_path):
    env = up_env(tmp_path)
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.Popen([str(BIN / "mk1"), "up"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl-C stops everything" in line or proc.poll() is not None:
            break
    out = "".join(lines)
    assert "mk1 is up (backend: process)" in out, out
    assert f"http://127.0.0.1:{env['MK1_DISPATCHER_PORT']}" in out and f":{env['MK1_UI_PORT']}" in out
    try:
        aws_env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{env['MK1_AWS_PORT']}",
                   "AWS_DEFAULT_REGION": "us-east-1", **operator_env(Path(env["MK1_HOME"])),
                   "DISABLE_DEPRECATION_NOTICE": "1"}

        def awslocal(*args):
            r = subprocess.run([str(BIN / "awslocal"), *args], env=aws_env, capture_output=True, text=True,
                               timeout=60)
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout)
        assert awslocal("lambda", "get-function-concurrency", "--function-name",
                        "RuntimeAlpha")["ReservedConcurrentExecutions"] == 3
        queues = " ".join(awslocal("sqs", "list-queues")["QueueUrls"])
        assert "mk1-RuntimeAlpha-queue" in queues and "mk1-RuntimeBeta-queue" in queues
        assert {"user1", "user2", "admin"} <= {u["UserName"] for u in awslocal("iam", "list-users")["Users"]}
        creds = Path(env["MK1_HOME"]) / "credentials"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        from my_mk1_homework import Alpha
        os.environ["MK1_HOME"] = env["MK1_HOME"]
        try:
            alpha = Alpha(user="user1", endpoint=f"http://127.0.0.1:{env['MK1_DISPATCHER_PORT']}")
            assert alpha.generate("up and running") == "[alpha] running and up"
        finally:
            del os.environ["MK1_HOME"]
        family = descendants(proc.pid)
        assert len(family) >= 3   # moto, dispatcher, UI (+ the container)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "stopped." in rest
    wait_until(lambda: [p for p in family if alive(p)], lambda left: left == [], what="every process of mk1 up to exit")


def test_up_reports_a_port_in_use(tmp_path):
    env = up_env(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", int(env["MK1_DISPATCHER_PORT"])))
        s.listen()
        r = subprocess.run([str(BIN / "mk1"), "up"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"port {env['MK1_DISPATCHER_PORT']} for the dispatcher is in use" in r.stderr
