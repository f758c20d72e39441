"""`make bench` keeps working: its self-test runs figure 1 (20 warm calls through boto3, beside the
floor) against a real system, so a change that breaks the harness or the figures fails here, not
the next time someone runs the full benchmark."""
import json
import subprocess
import sys

from helpers import ROOT


def test_bench_selftest_measures_figure_1():
    r = subprocess.run([sys.executable, "-m", "bench", "--selftest"], cwd=ROOT, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0 and "selftest passed" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    results = json.loads((ROOT / ".mk1" / "bench" / "selftest.json").read_text())
    variants = results["figures"]["1"]["variants"]
    for name in ("mk1_boto3", "floor_http"):
        overhead = variants[name]["overhead_ms"]
        assert overhead["n"] == 20 and 0 < overhead["median"] < 1000, (name, overhead)
    assert "warm overhead via boto3" in r.stdout   # the printed table
