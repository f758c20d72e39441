"""What a container's process is given: Lambda's environment variables, its socket's folder."""
from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from chalicelib.model import FunctionConfig

_SOCKET_DIR: Path | None = None


def lambda_environment(f: FunctionConfig, log_stream: str, code_dir: Path, extra: dict) -> dict[str, str]:
    """The function's own variables, then Lambda's reserved ones (which the function cannot override).
    A JSON-logging function's runtime gets AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL (awslambdaric
    then writes its logging records as JSON and filters them at that level)."""
    logs = {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": f.logging.application_level or "INFO"} \
        if f.logging.format == "JSON" else {}
    return {**f.env, **extra, **logs,
            "AWS_LAMBDA_FUNCTION_NAME": f.name,
            "AWS_LAMBDA_FUNCTION_VERSION": f.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(f.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(f.timeout_s)),
            "AWS_LAMBDA_LOG_GROUP_NAME": f.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{f.runtime}",
            "LAMBDA_TASK_ROOT": str(code_dir),
            "_HANDLER": f.handler,
            "TZ": ":UTC"}


def socket_dir() -> Path:
    """A short per-process directory: a Unix socket path may not exceed 107 bytes, and
    MK1_HOME (or a test's tmp dir) can be deep."""
    global _SOCKET_DIR
    if _SOCKET_DIR is None:
        _SOCKET_DIR = Path(tempfile.mkdtemp(prefix="mk1-rt-"))
    return _SOCKET_DIR


def short_uid() -> str:
    return uuid.uuid4().hex[:6]
