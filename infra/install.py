"""`make up` / `make test`'s first step: pip install the locked packages, saying how far it is.

    .venv/bin/python infra/install.py requirements.txt constraints.txt

pip -q printed nothing for the ~2.5 minutes a fresh .venv takes (1.2 GB). Here pip's own lines are
read as they come: each "Collecting X" is one more of the lock's packages (constraints.txt pins the
whole set, so its count is the total), and the time so far gives the time left at that rate; then the
install step, the longest single one, is announced. Standard library only: it runs before anything
is installed.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time

_COLLECTING = re.compile(r"^(?:Collecting|Requirement already satisfied:|Obtaining)\s+([A-Za-z0-9_.\-\[\]]+)")
INSTALL_SECONDS_PER_PACKAGE = 0.4   # measured: ~40 s to install 106 wheels on 2 cores


class Progress:
    """pip's output lines in, one line of progress out per package (pure: tests feed it lines)."""

    def __init__(self, total: int, clock=time.monotonic):
        self.total, self.clock = max(total, 1), clock
        self.started = clock()
        self.seen: set[str] = set()

    def line(self, text: str) -> str | None:
        m = _COLLECTING.match(text.strip())
        if m:
            name = m.group(1).split("[")[0].lower()
            if name in self.seen:
                return None
            self.seen.add(name)
            done = len(self.seen)
            elapsed = self.clock() - self.started
            left = elapsed / done * max(self.total - done, 0) + self.total * INSTALL_SECONDS_PER_PACKAGE
            return f"[{done}/{self.total}] {name:<28} {elapsed:4.0f} s so far, about {_human(left)} left"
        if text.startswith("Installing collected packages"):
            count = text.count(",") + 1
            return (f"installing {count} packages (about {_human(count * INSTALL_SECONDS_PER_PACKAGE)}; "
                    "pip says nothing meanwhile) ...")
        return None


def _human(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def locked_count(constraints: str) -> int:
    with open(constraints) as f:
        return sum(1 for line in f if "==" in line and not line.lstrip().startswith("#"))


def main(argv: list[str]) -> int:
    requirements, constraints = argv[0], argv[1]
    progress = Progress(locked_count(constraints))
    tty = sys.stdout.isatty()
    proc = subprocess.Popen([sys.executable, "-m", "pip", "install", "--progress-bar", "off",
                             "--disable-pip-version-check", "-r", requirements],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    kept: list[str] = []
    for raw in proc.stdout:
        kept = (kept + [raw])[-60:]   # pip's last lines, shown if it fails
        said = progress.line(raw)
        if said and (tty or said.startswith("installing") or len(progress.seen) % 10 == 0):
            print(("\r\033[K" if tty else "") + said, end="" if tty and not said.startswith("installing") else "\n",
                  flush=True)
    code = proc.wait()
    if tty:
        print()
    if code:
        sys.stdout.write("".join(kept))
        print(f"pip install failed (exit {code})", file=sys.stderr)
        return code
    print(f"installed in {time.monotonic() - progress.started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
