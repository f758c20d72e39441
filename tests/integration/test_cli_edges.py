"""Rough edges a new user hit in the `mk1` command (issue: the CLI)."""
import os
import re
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def _env(system, **extra) -> dict:
    return {**os.environ, "MK1_HOME": str(system.home), "MK1_ENDPOINT": system.url,
            "AWS_ENDPOINT_URL": system.aws_url, "COLUMNS": "200", **extra}


def mk1(system, *args, env=None):
    return subprocess.run([str(BIN / "mk1"), *args], capture_output=True, text=True, env=env or _env(system),
                          cwd=ROOT, timeout=120)


def test_parallel_invoke_says_how_each_call_ran(system):
    r = mk1(system, "invoke", "RuntimeAlpha", "hello world", "-n", "3", "--parallel")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(r"\[\d\] \[alpha\] world hello  \([\d.]+ ms, waited [\d.]+ ms, (cold|warm) on "
                            r"RuntimeAlpha-\S+\)", line), line


def test_usage_export_into_a_closed_pipe_ends_quietly(system):
    mk1(system, "invoke", "RuntimeAlpha", "hello world")
    p = subprocess.run(f"'{BIN / 'mk1'}' usage export | head -c 10", shell=True, capture_output=True, text=True,
                       env=_env(system), cwd=ROOT, timeout=120)
    assert "BrokenPipeError" not in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_logs_have_timestamps_in_time_order(system):
    mk1(system, "invoke", "RuntimeBeta", "quick brown fox", "-n", "2")
    from helpers import wait_until
    out = wait_until(lambda: mk1(system, "logs", "RuntimeBeta").stdout.splitlines(),
                     lambda ls: sum("REPORT RequestId" in x for x in ls) >= 2, what="two REPORT lines")
    stamps = [x[:12] for x in out if x.strip()]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", s) for s in stamps), out[:3]
    assert stamps == sorted(stamps)


def test_an_unknown_key_names_the_endpoint_it_reached(system, tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text("[user1]\naws_access_key_id = AKIAUNKNOWN0000000\naws_secret_access_key = nope\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "credentials").write_text(creds.read_text())
    r = mk1(system, "invoke", "RuntimeAlpha", "hi", "--user", "user1", env=_env(system, MK1_HOME=str(home)))
    assert r.returncode == 2 and system.url in r.stderr, r.stderr
