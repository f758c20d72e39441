"""The benchmark's helper processes (the floor server, the runtime-loop floor): each exits when its
stdin closes, and is killed if it has not within the time it is given."""
from __future__ import annotations

import subprocess


def stop_on_eof(proc: subprocess.Popen, wait_s: float) -> None:
    if proc.poll() is None:
        proc.stdin.close()
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
