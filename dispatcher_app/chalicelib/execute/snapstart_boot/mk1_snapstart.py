"""The runtime side of mk1's SnapStart (process backend): runs as a function's snapshot process.

Standard library and awslambdaric only: it runs on the function's own Python (any python3.x).

awslambdaric already speaks SnapStart: with AWS_LAMBDA_INITIALIZATION_TYPE=snap-start it imports the
handler (the init), runs the `@register_before_snapshot` hooks, then calls the Runtime API's
`restore/next`, which on AWS returns in a restored microVM; then it runs the `@register_after_restore`
hooks and enters its invoke loop. Here `restore/next` is where the initialised process stays: it is
the snapshot. Each restore is a fork() of it (made ahead as a spare), given its identity on mk1's
request (a JSON message on a Unix socket, the environment's stdout as a passed file descriptor); it
returns from `restore/next` as
a new execution environment with its own Runtime API address, working directory, session and
limits, and awslambdaric carries on as on AWS. This process reaps its children and reports each exit.

What a fork cannot carry, handled as AWS documents for snapshots ("Handling uniqueness",
"network connections"): `random` is re-seeded in every child (CPython does so at fork); network
connections opened during init are shut down before the snapshot (a restored environment finds them
closed and reconnects, as after a real restore); threads do not survive a fork, so a snapshot with
threads running is refused (start them in an after-restore hook).
"""
import json
import os
import resource
import select
import signal
import socket
import sys
import threading
import types

CTL_FD = "_MK1_SNAPSHOT_FD"
ADDRESS_SPACE_ALLOWANCE_MB = 1024   # as the process backend's own limit (backends/process.py)


_PRCTL = None   # libc's prctl, found before the snapshot (importing ctypes in a restore costs ~2 ms)


def _preload():
    """What every restore would otherwise load itself: ctypes and libc's prctl, and the C++ runtime
    the native client links (loading it made the client's import 1.5 ms, 0.3 ms once loaded)."""
    global _PRCTL
    try:
        import ctypes
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
        for lib in ("libstdc++.so.6", "libgcc_s.so.1"):
            try:
                ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                pass
    except Exception:
        pass


def _stub_native_client():
    """awslambdaric's native Runtime API client reads AWS_LAMBDA_RUNTIME_API when it is first
    imported: each restored environment has its own, so the snapshot must not have imported it."""
    stub = types.ModuleType("runtime_client")
    stub.initialize_client = lambda user_agent: None
    sys.modules["runtime_client"] = stub


def _real_native_client():
    if not isinstance(sys.modules.get("runtime_client"), types.ModuleType) or \
            getattr(sys.modules["runtime_client"], "__file__", None) is not None:
        return   # the real one is in already
    del sys.modules["runtime_client"]
    import runtime_client   # noqa: the real one, reading this environment's address
    from awslambdaric import lambda_runtime_client as lrc
    runtime_client.initialize_client(lrc._user_agent())
    lrc.runtime_client = runtime_client


def _send(ctl, msg, fds=()):
    data = json.dumps(msg).encode()
    if fds:
        socket.send_fds(ctl, [data], list(fds))
    else:
        ctl.send(data)


def _network_sockets():
    """This process's open TCP/UDP sockets (not Unix sockets: mk1's own control socket is one)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if s.family in (socket.AF_INET, socket.AF_INET6):
                found.append(s)
            else:
                s.close()
        except OSError:
            s.close()
    return found


def _make_client_class():
    from awslambdaric.lambda_runtime_client import LambdaRuntimeClient

    class SnapshotClient(LambdaRuntimeClient):
        """awslambdaric's client, with the snapshot where AWS has `restore/next`."""

        def __init__(self, ctl):
            super().__init__(os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"), False)
            self.ctl = ctl
            self.restored = False

        def post_init_error(self, error_response_data, error_type_override=None):
            if self.restored:
                return super().post_init_error(error_response_data, error_type_override)
            error_type = error_type_override or error_response_data.get("errorType") or "Runtime.Unknown"
            _send(self.ctl, {"op": "init_error", "type": error_type, "error": error_response_data})

        def restore_next(self):
            threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
            if threads:
                raise RuntimeError(
                    "mk1 restores a snapshot by fork(), which keeps only the main thread, and init left "
                    f"{len(threads)} thread(s) running ({', '.join(threads[:5])}). Start threads in an "
                    "@register_after_restore hook, or turn SnapStart off for this function.")
            closed = 0
            for s in _network_sockets():
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    closed += 1
                except OSError:
                    pass
                s.close()
            sys.stdout.flush()
            sys.stderr.flush()
            _send(self.ctl, {"op": "ready", "closed_connections": closed})
            _serve(self)   # returns in each restored environment only
            self.restored = True
            self.lambda_runtime_address = os.environ["AWS_LAMBDA_RUNTIME_API"]

    return SnapshotClient


def _serve(client):
    """The snapshot's loop: hand each restore to a spare fork, reap them, report exits.

    A fork of this process costs ~1.5 ms here (its page tables), so it is made ahead: one spare
    child, forked and in its own session but not yet anyone's, waits for its environment. A restore
    request gives it its identity (Runtime API address, directory, output) and it goes on at once;
    the next spare is forked after the answer. Everything a restore is (the after-restore hooks, the
    native client, the first /next) still happens after the call arrived."""
    ctl = client.ctl
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    spare = _fork_spare(ctl, wake_r, wake_w)
    if spare is None:
        return
    while True:
        readable, _, _ = select.select([ctl, wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
            _reap(ctl)
        if ctl not in readable:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(ctl, 1 << 20, 4)
        except OSError:
            data, fds = b"", []
        if not data:
            os._exit(0)   # mk1 is gone or asked it to stop: its environments die with it (PDEATHSIG)
        req = json.loads(data)
        if req.get("op") != "restore":
            os._exit(0)
        for _attempt in range(2):
            pid, sock, listener = spare
            try:
                socket.send_fds(sock, [data], fds)
                sent = True
            except OSError:   # the spare died: fork another and give it this one
                sent = False
            sock.close()
            if sent:   # its Runtime API listener goes to mk1, which serves the environment on it
                _send(ctl, {"op": "restored", "id": req["id"], "pid": pid,
                            "address": "%s:%d" % listener.getsockname()}, [listener.fileno()])
            listener.close()
            spare = _fork_spare(ctl, wake_r, wake_w)
            if spare is None:
                return
            if sent:
                break
        for fd in fds:
            os.close(fd)
        if not sent:
            _send(ctl, {"op": "restored", "id": req["id"], "pid": -1})


def _fork_spare(ctl, wake_r, wake_w):
    """(pid, socket, Runtime API listener) of a new spare; None in the spare itself once it has
    become an environment. The spare's Runtime API address is known before it is anyone's: a
    listening socket bound here, handed to mk1 with the spare (mk1 serves that environment's Runtime
    API on it), so the spare imports the native client (which reads the address once) ahead too."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid != 0:
        theirs.close()
        return pid, ours, listener
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in (wake_r, wake_w):
            os.close(fd)
        ctl.close()
        ours.close()
        os.environ["AWS_LAMBDA_RUNTIME_API"] = "%s:%d" % listener.getsockname()
        listener.close()
        os.setsid()
        if _PRCTL is not None:   # die with the snapshot process (it dies with mk1)
            _PRCTL(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
        _real_native_client()
        data, fds, _, _ = socket.recv_fds(theirs, 1 << 20, 4)
        if not data:
            os._exit(0)
        theirs.close()
        _become(json.loads(data), fds[0])
    except BaseException as e:   # cannot become the environment: its exit says so
        os.write(2, f"mk1 snapstart: restore failed: {e!r}\n".encode())
        os._exit(70)
    return None


def _become(req, out_fd):
    """In the spare, once it is someone's: the environment's output, directory, variables, limits."""
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    os.chdir(req["cwd"])
    for key in req.get("unset", []):
        os.environ.pop(key, None)
    os.environ.update(req["env"])
    limit = (int(req["memory_mb"]) + ADDRESS_SPACE_ALLOWANCE_MB) * 1024 * 1024
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass


def _reap(ctl):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(ctl, {"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})


def main():
    handler = sys.argv[1]
    ctl = socket.socket(fileno=int(os.environ.pop(CTL_FD)))
    _preload()
    _stub_native_client()
    from awslambdaric import bootstrap
    client = _make_client_class()(ctl)
    bootstrap.run(handler, client)


if __name__ == "__main__":
    main()
