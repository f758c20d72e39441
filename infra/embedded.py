"""The embedded AWS: moto's server on 127.0.0.1:4566, started and stopped by mk1."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from my_mk1_homework.settings import Settings


class PortInUse(RuntimeError):
    pass


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class Stopped(Exception):
    """The wait was asked to stop (its `stop` event was set) before the URL answered."""


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None,
              stop: threading.Event | None = None) -> None:
    """Until `url` answers below 500; raises if `proc` exits first, after `timeout`, or (Stopped) once
    `stop` is set."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status < 500:
                    return
        except Exception:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        if stop is None:
            time.sleep(0.05)
        elif stop.wait(0.05):
            raise Stopped()


def command(host: str, port: int) -> list[str]:
    """moto's server, through mk1's launcher (infra/moto_server.py: some of moto's per-request costs out)."""
    return [sys.executable, "-m", "infra.moto_server", "-H", host, "-p", str(port)]


class EmbeddedAWS:
    """A moto server process; `start()` waits until it answers."""

    def __init__(self, settings: Settings, log_path: Path | None = None):
        self.host, self.port = settings.MK1_AWS_HOST, settings.MK1_AWS_PORT
        self.url = f"http://{self.host}:{self.port}"
        self.log_path = log_path or settings.home / "moto.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> "EmbeddedAWS":
        if not port_is_free(self.host, self.port):
            raise PortInUse(f"port {self.port} on {self.host} is in use: another AWS endpoint "
                            f"(or an earlier mk1) runs there. Stop it or set MK1_AWS_PORT.")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(command(self.host, self.port),
                                     stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        wait_http(f"{self.url}/moto-api/", timeout, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
