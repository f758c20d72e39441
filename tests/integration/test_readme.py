"""Every command block of the README runs as shown, in order, against a running mk1.

The blocks are read from README.md itself: each `sh` block is run by bash (so `source`, `export`,
line continuations and `$(...)` behave as pasted), each `python` block by the venv's Python, in a
directory laid out as a checkout (`.venv`, `.mk1`, `functions/`, the packages) whose `.mk1` is a
private system's home. Only the ports differ from a fresh `make up`: the system's own free ports
stand in for 8000 and 4566. `make up` / `make test` / `make down` themselves are other tests'
(test_make_up.py, CI). A command that fails, or a shown answer that does not come, fails the test.
"""
import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers import FAST

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.S | re.M)
SKIP = re.compile(r"^\s*make (up|test|down)\b")


def blocks() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text())


@pytest.fixture
def checkout(make_system, tmp_path):
    s = make_system()
    where = tmp_path / "clone"
    where.mkdir()
    for name in (".venv", "functions", "my_mk1_homework", "infra", "dispatcher_app", "ui"):
        (where / name).symlink_to(ROOT / name)
    (where / ".mk1").symlink_to(s.home)
    return s, where


def _localise(text: str, s) -> str:
    return text.replace("http://127.0.0.1:8000", s.url).replace("127.0.0.1:4566", f"127.0.0.1:{s.aws_port}")


def test_every_readme_command_block_runs_as_shown(checkout):
    s, where = checkout
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MK1_"))}
    env.update({k: v for k, v in s.env.items() if k.startswith("MK1_") and k in FAST or k == "MK1_HOME"},
               MK1_ENDPOINT=s.url, MK1_DISPATCHER_PORT=str(s.port), MK1_AWS_PORT=str(s.aws_port),
               LOCALSTACK_HOST=f"127.0.0.1:{s.aws_port}", AWS_ENDPOINT_URL=s.aws_url, HOME=str(where))
    found, state = blocks(), where / ".shell-state"
    assert [kind for kind, _ in found].count("python") >= 2 and len(found) >= 6
    ran = 0
    for kind, text in found:
        if kind == "sh":
            lines = [line for line in text.splitlines() if not SKIP.match(line)]
            if not any(line.strip() and not line.lstrip().startswith("#") for line in lines):
                continue
            # One terminal, pasted in order: what a block exported (`source .venv/bin/activate`,
            # `export ...`) is there for the next one.
            script = (f"set -euo pipefail\n[ -f {state} ] && source {state}\n" + _localise("\n".join(lines), s)
                      + f"\nexport -p > {state}\n")
            r = subprocess.run(["bash", "-c", script], cwd=where, env=env, capture_output=True, text=True,
                               timeout=180)
        else:
            (where / "demo.py").write_text(_localise(text, s))
            r = subprocess.run([str(where / ".venv" / "bin" / "python"), "demo.py"], cwd=where, env=env,
                               capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, f"README block failed:\n{text}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
        for shown in re.findall(r"#\s+(\[(?:alpha|beta)\][^(\n]*?)\s*(?:\(|$)", text, re.M):
            assert shown.strip() in r.stdout, f"README shows {shown!r}; got:\n{r.stdout}"
        ran += 1
    assert ran >= 6
