"""Builds a function's deployment zip from functions/<dir>/ plus functions/common/.

Deterministic (fixed timestamps, sorted names) so the same source gives the same
CodeSha256 and re-provisioning is a no-op.
"""
from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

from my_mk1_homework.settings import PROJECT_ROOT

from . import names

FUNCTIONS_DIR = PROJECT_ROOT / "functions"


def source_files(function: str) -> list[Path]:
    own = FUNCTIONS_DIR / names.FUNCTION_DIRS[function]
    files = [p for p in own.glob("*.py")] + list((FUNCTIONS_DIR / "common").glob("*.py"))
    return sorted(files, key=lambda p: p.name)


def build_zip(function: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in source_files(function):
            info = zipfile.ZipInfo(path.name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, path.read_bytes())
    return buf.getvalue()


def code_sha256(zip_bytes: bytes) -> str:
    """Lambda's CodeSha256: base64 of the SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def sha_hex(code_sha256_b64: str) -> str:
    return base64.b64decode(code_sha256_b64).hex()
