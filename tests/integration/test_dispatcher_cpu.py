"""The dispatcher's threads run on one CPU, its functions' processes on every CPU (chalicelib/cpu.py),
checked on the real processes through /proc."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, descendants, process_environ

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux's")
EVERY = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()   # importable off Linux


def _cpus(status: Path) -> set[int] | None:
    """Cpus_allowed_list of a process or thread ("0-1", "0,2-3"); None if it has ended meanwhile."""
    try:
        text = status.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    line = next(x for x in text.splitlines() if x.startswith("Cpus_allowed_list:"))
    out = set()
    for part in line.split(":", 1)[1].strip().split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def test_dispatcher_threads_on_one_cpu_and_functions_on_all(system):
    c = system.lambda_client("admin")
    assert c.invoke(FunctionName="RuntimeAlpha", Payload=b'{"prompt": "a b"}')["StatusCode"] == 200
    pid = system.dispatcher.pid
    threads = {int(t.name): _cpus(t / "status") for t in Path(f"/proc/{pid}/task").iterdir()}
    assert len(threads) > 10   # the HTTP server, the pumps, the writers, the Runtime API endpoints
    want = {max(EVERY)} if len(EVERY) > 1 else EVERY
    assert {tid: cpus for tid, cpus in threads.items() if cpus not in (want, None)} == {}
    functions = {p: _cpus(Path(f"/proc/{p}/status")) for p in descendants(pid)}
    assert functions, "the warm RuntimeAlpha container is a process of the dispatcher's"
    assert {p: cpus for p, cpus in functions.items() if cpus not in (EVERY, None)} == {}
    assert f"on CPU {max(EVERY)}" in system.log() or len(EVERY) == 1


def test_a_cpu_it_may_not_use_stops_the_dispatcher_with_the_reason(system):
    env = {**system.env, "MK1_DISPATCHER_CPU": str(max(EVERY) + 1), "MK1_DISPATCHER_PORT": "0"}
    r = subprocess.run([sys.executable, "-m", "chalicelib.edge.server"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert f"MK1_DISPATCHER_CPU={max(EVERY) + 1}: this process may use only CPUs" in r.stdout + r.stderr


def _limit(limits: str, name: str) -> tuple[str, str]:
    line = next(x for x in limits.splitlines() if x.startswith(name))
    soft, hard = line[len(name):].split()[:2]
    return soft, hard


def test_function_processes_get_their_memory_limit_and_no_core_dumps(system):
    """The process backend sets a container's limits from the dispatcher once the process exists
    (backends/process.py `_spawn`): address space = its function's memory size (Lambda's
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE in its environment) + the 1,024 MiB allowance, no core file.
    Read on the real processes, as for the CPUs above; other tests' warm functions may be there too."""
    c = system.lambda_client("admin")
    assert c.invoke(FunctionName="RuntimeAlpha", Payload=b'{"prompt": "a b"}')["StatusCode"] == 200
    functions = {}
    for p in descendants(system.dispatcher.pid):
        env = process_environ(p)
        if "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" in env:
            functions[p] = (env["AWS_LAMBDA_FUNCTION_NAME"], int(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]),
                            Path(f"/proc/{p}/limits").read_text())
    assert "RuntimeAlpha" in {name for name, _, _ in functions.values()}, functions
    for name, memory_mb, limits in functions.values():
        want = str((memory_mb + 1024) * 1024 * 1024)
        assert _limit(limits, "Max address space") == (want, want), name
        assert _limit(limits, "Max core file size") == ("0", "0"), name
