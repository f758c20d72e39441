"""Entry point of every function container (copied into the image as /opt/mk1/shim.py).

The container runs with `--network none`, so mk1's Runtime API reaches it only as
a bind-mounted Unix socket; awslambdaric speaks TCP only. This shim listens on
the container's own loopback and forwards each connection to the socket, then
runs awslambdaric as a child pointed at that loopback port and exits with the
child's status. Standard library only: it runs on the image's bare Python.

Usage: python3 shim.py HANDLER          (python3.x runtimes: awslambdaric over HANDLER)
       python3 shim.py --exec PROGRAM   (custom runtimes: the function's own bootstrap)
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

SOCKET_PATH = "/run/mk1/runtime.sock"   # where the backend mounts the container's endpoint
LISTEN = ("127.0.0.1", 9001)            # inside the container's own network namespace
CHUNK = 64 * 1024


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except OSError:
        pass  # the other side went away: end this direction
    try:
        dst.shutdown(socket.SHUT_WR)  # pass the half-close on, as a proxy must
    except OSError:
        pass


def _forward(client: socket.socket) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(SOCKET_PATH)
    except OSError as e:
        print(f"mk1 shim: cannot reach the Runtime API at {SOCKET_PATH}: {e}", file=sys.stderr, flush=True)
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _serve(listener: socket.socket) -> None:
    while True:
        client, _ = listener.accept()
        # Without TCP_NODELAY each small Runtime API message waits for a delayed ACK (~40 ms).
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_forward, args=(client,), daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--exec":
        command = [argv[2]]
    elif len(argv) == 2:
        command = [sys.executable, "-m", "awslambdaric", argv[1]]
    else:
        print("usage: shim.py HANDLER | shim.py --exec PROGRAM", file=sys.stderr)
        return 2
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(LISTEN)
    listener.listen(16)  # bound before awslambdaric starts, so its first connect cannot miss
    threading.Thread(target=_serve, args=(listener,), daemon=True).start()
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": f"{LISTEN[0]}:{LISTEN[1]}"}
    wrapper = os.environ.get("AWS_LAMBDA_EXEC_WRAPPER")
    if wrapper and argv[1] != "--exec":   # a managed runtime starts through it (AWS: exit 127 if missing)
        command = ["/bin/sh", "-c", 'exec "$@"', "sh", wrapper, *command]
    child = subprocess.run(command, env=env, stdin=subprocess.DEVNULL)
    code = child.returncode
    return 128 - code if code < 0 else code  # killed by signal N: exit 128+N, as a shell would


if __name__ == "__main__":
    sys.exit(main(sys.argv))
