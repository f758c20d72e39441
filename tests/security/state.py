"""What the running system looks like, for "nothing changed" checks: no usage record, no container."""
import json
import time
import urllib.request


def status(system) -> dict:
    with urllib.request.urlopen(system.url + "/mk1/status", timeout=10) as r:
        return json.load(r)


def containers(system) -> set[str]:
    return {c["id"] for f in status(system)["functions"].values() for c in f["containers"]}


def usage_lines(system) -> list[str]:
    path = system.home / "usage.log"
    return path.read_text().splitlines() if path.exists() else []


def wait_quiet(system, timeout: float = 20) -> None:
    """Nothing running, nothing waiting, no usage record in flight (other tests' async retries)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(system)
        busy = any(f["in_use"] or f["waiting"] or f.get("held") for f in st["functions"].values())
        queued = any(isinstance(q, dict) and any(q.get(k) for k in ("visible", "NotVisible", "Delayed"))
                     for q in st.get("queues", {}).values())
        if not busy and not queued and st["recorder"]["backlog"] == 0:
            return
        time.sleep(0.1)


class Unchanged:
    """`with Unchanged(system) as u: ...` then: no new usage line, no new container."""

    def __init__(self, system, settle: float = 0.3):
        self.system, self.settle = system, settle

    def __enter__(self):
        wait_quiet(self.system)
        self.lines = len(usage_lines(self.system))
        self.containers = containers(self.system)
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is not None:
            return False
        time.sleep(self.settle)   # > MK1_USAGE_BATCH_MS: a record would have been written by now
        new_lines = usage_lines(self.system)[self.lines:]
        assert new_lines == [], f"usage records appeared: {new_lines}"
        new = containers(self.system) - self.containers
        assert not new, f"containers started: {new}"
        return False
