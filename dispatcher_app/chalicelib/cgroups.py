"""Where a process's cgroup files are, for a controller: read from its /proc/<pid>/cgroup lines,
cgroup v2's one hierarchy (`0::/path`) or v1's own hierarchy for that controller (`N:pids:/path`).
The front door reads its own pids limit here (edge/bounds.py), the Docker backend a container's
peak memory (execute/backends/docker.py)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def controller_dirs(cgroup_file: Path, controller: str, root: Path = ROOT) -> list[tuple[int, Path]]:
    """(cgroup version, directory) of each of the process's cgroups holding `controller`'s files, in
    the file's order; none if it cannot be read (no such process, not Linux)."""
    try:
        lines = cgroup_file.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            found.append((2, root / path.lstrip("/")))
        elif controller in controllers.split(","):
            found.append((1, root / controller / path.lstrip("/")))
    return found
