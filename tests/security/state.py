"""What the running system looks like, for "nothing changed" checks: no usage record, no container."""


def containers(system) -> set[str]:
    return {c["id"] for f in system.status()["functions"].values() for c in f["containers"]}


def usage_lines(system) -> list[str]:
    path = system.home / "usage.log"
    return path.read_text().splitlines() if path.exists() else []


class Unchanged:
    """`with Unchanged(system) as u: ...` then: no new usage line, no new container."""

    def __init__(self, system):
        self.system = system

    def __enter__(self):
        self.system.wait_quiet()   # other tests' async calls and retries finished
        self.lines = len(usage_lines(self.system))
        self.containers = containers(self.system)
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is not None:
            return False
        # a record is promised before its call is answered: once quiet, none can still come
        self.system.wait_quiet()
        new_lines = usage_lines(self.system)[self.lines:]
        assert new_lines == [], f"usage records appeared: {new_lines}"
        new = containers(self.system) - self.containers
        assert not new, f"containers started: {new}"
        return False
