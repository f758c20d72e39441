"""What the figures share: the system under test, the clients, the floor server.

The system is the real one, started as the integration tests start it
(tests/helpers.py `System`: moto server + provisioning + the dispatcher process,
on free loopback ports). All traffic stays on 127.0.0.1.
"""
from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "dispatcher_app", ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import boto3  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

from helpers import System, deploy_code, free_port  # noqa: E402,F401  (tests/helpers.py)

from my_mk1_homework.run_header import number, run_of  # noqa: E402,F401  (X-Mk1-Run's fields)

from .child import stop_on_eof  # noqa: E402

REGION = "us-east-1"
USER = "admin"
PAYLOAD = {"prompt": "hello benchmark world"}
PAYLOAD_BYTES = json.dumps(PAYLOAD).encode()
INVOKE_PATH = "/2015-03-31/functions/{}/invocations"


# -- the system under test --
@contextmanager
def running_system(tag: str, **env: str) -> Iterator[System]:
    """A private mk1 (its own moto, home and dispatcher), stopped and removed afterwards.

    The home is short and under /tmp: the Docker backend puts AF_UNIX sockets below it.
    """
    home = Path(tempfile.mkdtemp(prefix=f"mk1b-{tag}-"))
    env = {"MK1_LOG_LEVEL": "WARNING", **env}
    s = System(home, **env)
    try:
        s.start()
        yield s
    finally:
        s.stop()
        shutil.rmtree(home, ignore_errors=True)


def proc_status(pid: int) -> dict:
    """VmRSS / VmHWM (peak RSS) / Threads of a process, in MiB (threads as a count)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
            elif key == "Threads":
                out[key] = int(value)
    except OSError:
        pass
    return out


def boto3_lambda(system: System, pool: int = 16):
    akid, secret = system.keys(USER)
    return boto3_client(system.url, akid, secret, pool)


def boto3_client(url: str, akid: str = "test", secret: str = "test", pool: int = 16):
    """A lambda client as a user makes one (like my_mk1_homework.Function's): no retries, keep-alive."""
    cfg = Config(retries={"total_max_attempts": 1}, read_timeout=900, connect_timeout=10,
                 max_pool_connections=pool, tcp_keepalive=True)
    return boto3.session.Session(aws_access_key_id=akid, aws_secret_access_key=secret,
                                 region_name=REGION).client("lambda", endpoint_url=url, config=cfg)


def boto3_invoke(client, function: str, body: bytes = PAYLOAD_BYTES) -> tuple[float, dict, dict]:
    """(latency ms, payload, headers) of one RequestResponse call."""
    t0 = time.perf_counter()
    r = client.invoke(FunctionName=function, Payload=body)
    raw = r["Payload"].read()
    ms = (time.perf_counter() - t0) * 1000
    if r.get("FunctionError"):
        raise RuntimeError(f"{function} failed: {raw[:300]!r}")
    return ms, json.loads(raw), r["ResponseMetadata"]["HTTPHeaders"]


class SignedHttp:
    """The Invoke API over one keep-alive http.client connection, SigV4-signed per call by botocore.

    The same request boto3 sends, without boto3's client machinery: the part of a boto3
    call's time that is boto3's own is boto3 minus this.
    """

    def __init__(self, url: str, akid: str, secret: str):
        self.url = url.rstrip("/")
        host, port = self.url.split("://", 1)[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=900)
        self.auth = SigV4Auth(Credentials(akid, secret), "lambda", REGION)

    def invoke(self, function: str, body: bytes = PAYLOAD_BYTES) -> tuple[float, dict, dict]:
        path = INVOKE_PATH.format(function)
        t0 = time.perf_counter()
        req = AWSRequest(method="POST", url=self.url + path, data=body)
        self.auth.add_auth(req)
        self.conn.request("POST", path, body=body, headers=dict(req.headers.items()))
        resp = self.conn.getresponse()
        raw = resp.read()
        ms = (time.perf_counter() - t0) * 1000
        if resp.status != 200 or resp.getheader("X-Amz-Function-Error"):
            raise RuntimeError(f"{function}: HTTP {resp.status} {raw[:300]!r}")
        return ms, json.loads(raw), {k.lower(): v for k, v in resp.getheaders()}

    def close(self) -> None:
        self.conn.close()


class PlainHttp:
    """A bare keep-alive HTTP POST (http.client; it sets TCP_NODELAY itself)."""

    def __init__(self, url: str, path: str):
        host, port = url.split("://", 1)[1].rstrip("/").split(":")
        self.path = path
        self.conn = http.client.HTTPConnection(host, int(port), timeout=900)

    def invoke(self, body: bytes = PAYLOAD_BYTES) -> tuple[float, dict, dict]:
        t0 = time.perf_counter()
        self.conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        raw = resp.read()
        ms = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise RuntimeError(f"{self.path}: HTTP {resp.status} {raw[:300]!r}")
        return ms, json.loads(raw), {k.lower(): v for k, v in resp.getheaders()}

    def close(self) -> None:
        self.conn.close()


# -- the handler, called directly (the floor of a call) --
def load_alpha_handler(generate_seconds: float = 0.0) -> Callable[[dict, object], dict]:
    """functions/alpha/handler.py's `handler`, imported in this process with LOAD=0, GENERATE=g."""
    for sub in ("common", "alpha"):
        p = str(ROOT / "functions" / sub)
        if p not in sys.path:
            sys.path.insert(0, p)
    saved = {k: os.environ.get(k) for k in ("LOAD_SECONDS", "GENERATE_SECONDS")}
    os.environ.update(LOAD_SECONDS="0", GENERATE_SECONDS=str(generate_seconds))
    try:
        name = f"mk1_bench_alpha_handler_{str(generate_seconds).replace('.', '_')}"
        spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / "alpha" / "handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module.handler
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the floor: a stdlib HTTP server with TCP_NODELAY running the same handler, in its own process --
def make_floor_server(cap: int = 3) -> ThreadingHTTPServer:
    """http.server (threaded, TCP_NODELAY, HTTP/1.1 keep-alive) answering any POST with the handler.

    A path containing "gen50" runs the 50 ms handler behind a semaphore of 3 (the cap);
    anything else runs the no-op handler. Lambda-shaped paths work, so boto3 can call it.
    """
    noop, gen50 = load_alpha_handler(0.0), load_alpha_handler(0.05)
    gate = threading.Semaphore(cap)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            event = json.loads(body)
            if "gen50" in self.path:
                with gate:
                    result = gen50(event, None)
            else:
                result = noop(event, None)
            out = json.dumps(result).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

    return Server(("127.0.0.1", 0), Handler)


class FloorServer:
    """The floor server in a process of its own (python -m bench.harness floor), as mk1's
    dispatcher is: the benchmark's client threads do not share a GIL with it."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.harness", "floor"], cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the floor server did not start: {line!r}")
        self.url = line

    def stop(self) -> None:
        stop_on_eof(self.proc, 10)     # the server exits on EOF


def _serve_floor() -> None:
    server = make_floor_server()
    threading.Thread(target=server.serve_forever, daemon=True, name="floor-http").start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()


# -- many clients at once --
def run_clients(make_client: Callable[[], object], call: Callable[[object], tuple[float, dict, dict]],
                clients: int, total: int) -> dict:
    """`clients` threads share `total` calls; each thread has its own client object.

    Returns per-call rows (start offset s, latency ms, handler generate_ms, the dispatcher's
    duration_ms / wait_ms headers when present) and the wall time from first start to last end.
    """
    lock = threading.Lock()
    remaining = [total]
    rows: list[dict] = []
    errors: list[str] = []
    objs = [make_client() for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    t_base = [0.0]

    def worker(obj):
        barrier.wait()
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            t0 = time.perf_counter()
            try:
                ms, payload, headers = call(obj)
            except Exception as e:  # counted, reported
                with lock:
                    errors.append(f"{type(e).__name__}: {e}"[:300])
                continue
            ran = run_of(headers)
            row = {"t": t0 - t_base[0], "ms": ms, "generate_ms": payload.get("generate_ms"),
                   "duration_ms": number(ran, "duration-ms"), "wait_ms": number(ran, "wait-ms")}
            with lock:
                rows.append(row)

    threads = [threading.Thread(target=worker, args=(o,), daemon=True) for o in objs]
    for t in threads:
        t.start()
    t_base[0] = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = max((r["t"] + r["ms"] / 1000 for r in rows), default=0.0) - min((r["t"] for r in rows), default=0.0)
    return {"rows": rows, "wall_s": wall, "errors": errors, "ok": len(rows)}


# -- a burst: N calls submitted at once over N connections (asyncio, raw HTTP/1.1) --
def burst(url: str, akid: str, secret: str, function: str, n: int, timeout_s: float = 900,
          stall_s: float = 60, rate_per_s: float | None = None) -> dict:
    """Open N connections one after another as fast as one client can (or rate_per_s) and send a
    signed Invoke on each without waiting; then read all the answers. Returns per-call rows in
    submission order.

    If no answer at all arrives for `stall_s` while calls are outstanding, the rest are abandoned
    (rows with status 0, "stalled") and `stalled` is set: the system stopped making progress."""
    host, port = url.split("://", 1)[1].rstrip("/").split(":")
    port = int(port)
    auth = SigV4Auth(Credentials(akid, secret), "lambda", REGION)
    path = INVOKE_PATH.format(function)

    def signed_request() -> bytes:
        req = AWSRequest(method="POST", url=url + path, data=PAYLOAD_BYTES)
        auth.add_auth(req)
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(PAYLOAD_BYTES)}",
                "Connection: close"]
        head += [f"{k}: {v}" for k, v in req.headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + PAYLOAD_BYTES

    async def read_answer(reader, sent: float) -> dict:
        status_line = await reader.readline()
        headers = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else await reader.read()
        done, done_wall = time.perf_counter(), time.time()
        status = int(status_line.split()[1]) if status_line else 0
        return {"status": status, "ms": (done - sent) * 1000, "done": done, "done_wall": done_wall, "headers": headers,
                "request_id": headers.get("x-amzn-requestid"), "function_error": headers.get("x-amz-function-error"),
                "body": body[:200].decode("utf-8", "replace")}

    async def main() -> dict:
        tasks, writers, sent_at, sent_wall, connect_ms = [], [], [], [], []
        t_first = time.perf_counter()
        for i in range(n):
            if rate_per_s:
                await asyncio.sleep(max(0.0, t_first + i / rate_per_s - time.perf_counter()))
            # Time in connect counts: a SYN the listen backlog drops is retried after 1 s, 3 s,
            # which a latency taken from the send would not show.
            connecting = time.perf_counter()
            reader, writer = await asyncio.open_connection(host, port)
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            writer.write(signed_request())
            sent = time.perf_counter()
            sent_at.append(sent)
            connect_ms.append((sent - connecting) * 1000)
            sent_wall.append(time.time())
            writers.append(writer)
            tasks.append(asyncio.create_task(asyncio.wait_for(read_answer(reader, sent), timeout_s)))
        t_submitted = time.perf_counter()
        pending, stalled = set(tasks), False
        while pending:
            done, pending = await asyncio.wait(pending, timeout=stall_s)
            if not done and pending:
                stalled = True
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                break
        def outcome(t):
            if t.cancelled():
                return asyncio.CancelledError(f"stalled: no answer from the system for {stall_s:.0f} s")
            return t.exception() or t.result()
        results = [outcome(t) for t in tasks]
        for w in writers:
            w.close()
        rows = []
        for i, r in enumerate(results):
            if isinstance(r, BaseException):
                rows.append({"seq": i, "status": 0, "error": f"{type(r).__name__}: {r}"[:300],
                             "sent": sent_at[i] - t_first})
            else:
                r["seq"], r["sent"], r["sent_wall"] = i, sent_at[i] - t_first, sent_wall[i]
                r["connect_ms"] = connect_ms[i]
                r["done"] -= t_first
                rows.append(r)
        return {"rows": rows, "submit_s": t_submitted - t_first, "stalled": stalled,
                "wall_s": max((r.get("done", 0) for r in rows), default=0)}

    return asyncio.run(main())


if __name__ == "__main__" and sys.argv[1:] == ["floor"]:
    _serve_floor()


# -- CPU time by process: who burns the 2 cores during a figure --
def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


class CpuMeter:
    """CPU seconds used meanwhile by the dispatcher, its function processes, moto and this client."""

    def __init__(self, system):
        self.system = system
        self.t0 = time.monotonic()
        self.start = self._sample()

    def _sample(self) -> dict:
        d, m = self.system.dispatcher.pid, self.system.moto.pid
        kids = {p: _cpu_s(p) for p in _children(d)}
        return {"dispatcher": _cpu_s(d), "functions": kids, "moto": _cpu_s(m), "client": time.process_time()}

    def stop(self, calls: int) -> dict:
        end, wall = self._sample(), time.monotonic() - self.t0
        fn = sum(v - self.start["functions"].get(p, 0.0) for p, v in end["functions"].items())
        used = {"dispatcher": end["dispatcher"] - self.start["dispatcher"], "function processes": fn,
                "moto": end["moto"] - self.start["moto"], "bench client": end["client"] - self.start["client"]}
        out = {k: round(v * 1000 / max(calls, 1), 2) for k, v in used.items()}
        out["total"] = round(sum(used.values()) * 1000 / max(calls, 1), 2)
        out["machine_cpu_ms_available_per_call"] = round(wall * (os.cpu_count() or 1) * 1000 / max(calls, 1), 2)
        return out


def _machine_busy_s() -> float:
    """CPU seconds the machine has spent busy since boot, on all its CPUs (/proc/stat: all but idle
    and iowait)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class CoreSampler:
    """Samples the CPU seconds of the processes CpuMeter counts, and of the whole machine, every
    `every_s` until stop(): stats.cores_by_phase turns them into cores kept busy in each phase."""

    def __init__(self, system, every_s: float = 0.1):
        # The function processes as they are now (figure 4's three warm ones): listing /proc's
        # every process at each sample would cost the client's CPU being measured.
        self._pids = {"dispatcher": [system.dispatcher.pid], "moto": [system.moto.pid],
                      "function processes": _children(system.dispatcher.pid)}
        self._every_s = every_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="core-sampler")
        self._thread.start()

    def _take(self) -> None:
        used = {name: sum(_cpu_s(p) for p in pids) for name, pids in self._pids.items()}
        self.samples.append((time.time(), {"machine": _machine_busy_s(), **used,
                                           "bench client": time.process_time()}))

    def _loop(self) -> None:
        self._take()
        while not self._stop.wait(self._every_s):
            self._take()

    def stop(self) -> list[tuple[float, dict[str, float]]]:
        self._stop.set()
        self._thread.join()
        self._take()
        return self.samples
