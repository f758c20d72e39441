"""Start the real system for tests: moto server, provisioning, dispatcher process."""
from __future__ import annotations

import configparser
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config

from infra.embedded import command as moto_command, wait_http

ROOT = Path(__file__).resolve().parent.parent

FAST = {"MK1_ALPHA_LOAD_SECONDS": "0.2", "MK1_ALPHA_GENERATE_SECONDS": "0.05",
        "MK1_BETA_LOAD_SECONDS": "0.2", "MK1_BETA_GENERATE_SECONDS": "0.05",
        "MK1_BACKEND": "process", "MK1_CONTROL_REFRESH_MS": "300", "MK1_USAGE_BATCH_MS": "20",
        "MK1_LOGS_BATCH_MS": "20"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dispatcher(env: dict, home: Path, url: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.edge.server"], env=env, cwd=ROOT,
                            stdout=(home / "dispatcher.log").open("ab"), stderr=subprocess.STDOUT)
    wait_http(f"{url}/health", 60, proc)
    return proc


def stop_process(proc: subprocess.Popen | None, sig=signal.SIGTERM) -> None:
    if proc and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Peer:
    """One more dispatcher process on a System's AWS endpoint (cluster mode), home and port its own."""

    def __init__(self, first: "System", name: str):
        self.home = first.home / name
        self.home.mkdir(exist_ok=True)
        shutil.copy(first.home / "credentials", self.home / "credentials")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = start_dispatcher({**first.env, "MK1_HOME": str(self.home),
                                      "MK1_DISPATCHER_PORT": str(self.port)}, self.home, self.url)

    def stop(self, sig=signal.SIGTERM) -> None:
        stop_process(self.proc, sig)


class System:
    """moto + provisioning + one dispatcher process, each on its own free port."""

    def __init__(self, home: Path, **env: str):
        self.home = home
        self.aws_port, self.port = free_port(), free_port()
        self.env = {**os.environ, **FAST, **env, "MK1_HOME": str(home), "MK1_AWS_PORT": str(self.aws_port),
                    "MK1_DISPATCHER_PORT": str(self.port), "AWS_ENDPOINT_URL": "",
                    "MK1_LOG_LEVEL": env.get("MK1_LOG_LEVEL", "INFO"), "PYTHONUNBUFFERED": "1"}
        self.env.pop("AWS_ENDPOINT_URL")
        self.url = f"http://127.0.0.1:{self.port}"
        self.aws_url = f"http://127.0.0.1:{self.aws_port}"
        self.moto: subprocess.Popen | None = None
        self.dispatcher: subprocess.Popen | None = None

    def settings(self):
        from my_mk1_homework import settings
        return settings.load(self.env)

    def start(self) -> "System":
        self.home.mkdir(parents=True, exist_ok=True)
        self.start_moto()
        self.provision()
        self.start_dispatcher()
        return self

    def start_moto(self) -> None:
        self.moto = subprocess.Popen(moto_command("127.0.0.1", self.aws_port),
                                     stdout=(self.home / "moto.log").open("ab"), stderr=subprocess.STDOUT)
        wait_http(f"{self.aws_url}/moto-api/", 30, self.moto)

    def provision(self):
        from infra.provision import provision
        return provision(self.settings())

    def start_dispatcher(self) -> None:
        self.dispatcher = start_dispatcher(self.env, self.home, self.url)

    def stop_dispatcher(self, sig=signal.SIGTERM) -> None:
        stop_process(self.dispatcher, sig)

    def stop(self) -> None:
        self.stop_dispatcher()
        if self.moto and self.moto.poll() is None:
            self.moto.terminate()
            self.moto.wait(10)

    def log(self) -> str:
        return (self.home / "dispatcher.log").read_text(errors="replace")

    # -- clients --
    def keys(self, user: str) -> tuple[str, str]:
        cfg = configparser.ConfigParser()
        cfg.read(self.home / "credentials")
        return cfg[user]["aws_access_key_id"], cfg[user]["aws_secret_access_key"]

    def lambda_client(self, user: str, **cfg):
        akid, secret = self.keys(user)
        return boto3.client("lambda", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=akid,
                            aws_secret_access_key=secret,
                            config=Config(retries={"total_max_attempts": 1}, read_timeout=300,
                                          max_pool_connections=64, **cfg))

    def aws(self, service: str):
        return boto3.client(service, endpoint_url=self.aws_url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")

    def function(self, name: str, user: str, **kw):
        from my_mk1_homework import Function
        akid, secret = self.keys(user)
        return Function(name, user, access_key_id=akid, secret_access_key=secret, endpoint=self.url, **kw)

    def usage_records(self, expect: int | None = None, timeout: float = 15) -> list[dict]:
        import json
        path = self.home / "usage.log"
        deadline = time.monotonic() + timeout
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            if expect is None or len(lines) >= expect or time.monotonic() > deadline:
                return [json.loads(x) for x in lines]
            time.sleep(0.05)


def peak_concurrency(records) -> int:
    """Most calls running at once, from usage records' start/end (ISO strings sort as times)."""
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    running = top = 0
    for _, step in events:
        running += step
        top = max(top, running)
    return top
