"""Prepares a deployment to a real AWS account (`make package-aws`).

Writes, under build/aws/:
- RuntimeAlpha.zip, RuntimeBeta.zip: the functions' deployment packages (handler.handler,
  python3.11), deployed with `aws lambda create-function` + `put-function-concurrency 3`;
- dispatcher/: `chalice package` output (a SAM template + deployment zip) for the Chalice
  dispatcher, with mk1's shared modules vendored in; deploy with `sam deploy` or CloudFormation.
On AWS the dispatcher runs with MK1_EXECUTOR=lambda: it keeps authentication, IAM
authorization, queueing and usage, and the functions run as real Lambda functions.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from my_mk1_homework.settings import PROJECT_ROOT

from . import names, package

OUT = PROJECT_ROOT / "build" / "aws"
APP = PROJECT_ROOT / "dispatcher_app"


def function_zips(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fn in names.FUNCTIONS:
        path = out / f"{fn}.zip"
        path.write_bytes(package.build_zip(fn))
        written.append(path)
    return written


def chalice_package(out: Path = OUT / "dispatcher") -> Path:
    """Vendors my_mk1_homework and infra (chalicelib imports them) and runs `chalice package`."""
    vendor = APP / "vendor"
    shutil.rmtree(vendor, ignore_errors=True)
    try:
        for pkg in ("my_mk1_homework", "infra"):
            shutil.copytree(PROJECT_ROOT / pkg, vendor / pkg, ignore=shutil.ignore_patterns("__pycache__"))
        chalice = Path(sys.executable).parent / "chalice"
        env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
        subprocess.run([str(chalice), "package", str(out)], cwd=APP, check=True, env=env)
    finally:
        shutil.rmtree(vendor, ignore_errors=True)
    return out


def main() -> int:
    for p in function_zips():
        print(f"wrote {p.relative_to(PROJECT_ROOT)}")
    if "--functions-only" not in sys.argv:
        print(f"wrote {chalice_package().relative_to(PROJECT_ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
