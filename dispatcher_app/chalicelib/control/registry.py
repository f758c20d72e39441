"""The functions as the Lambda control plane defines them.

`FunctionRegistry` mirrors list_functions + reserved concurrency, refreshed in the
background, so `put-function-concurrency` or `update-function-code` made with any
AWS tool takes effect within one refresh interval and the call path reads memory.
"""
from __future__ import annotations

import logging
import threading
from urllib.parse import unquote

from botocore.exceptions import ClientError

from chalicelib.errors import ResourceNotFound, ServiceUnavailable
from chalicelib.model import FunctionConfig

log = logging.getLogger("mk1.functions")


def function_name_from(raw: str) -> tuple[str, str | None]:
    """'RuntimeAlpha', its ARN or partial ARN (optionally with :qualifier) -> (name, qualifier)."""
    value = unquote(raw)
    parts = value.split(":")
    if value.startswith("arn:"):
        if len(parts) < 7 or parts[5] != "function":
            raise ResourceNotFound(f"Function not found: {value}")
        return parts[6], (parts[7] if len(parts) > 7 else None)
    if len(parts) >= 3 and parts[1] == "function":          # 123456789012:function:Name[:qual]
        return parts[2], (parts[3] if len(parts) > 3 else None)
    if len(parts) == 2:                                      # Name:qualifier
        return parts[0], parts[1]
    return value, None


class FunctionRegistry:
    def __init__(self, lam, clock):
        self.lam = lam
        self.clock = clock
        self._configs: dict[str, FunctionConfig] = {}
        self._lock = threading.Lock()
        self._last_refresh = 0.0

    def refresh(self) -> None:
        configs = {}
        for page in self.lam.get_paginator("list_functions").paginate():
            for f in page["Functions"]:
                configs[f["FunctionName"]] = self._config(f)
        with self._lock:
            self._configs = configs
            self._last_refresh = self.clock.monotonic()

    def _config(self, f: dict) -> FunctionConfig:
        try:
            reserved = self.lam.get_function_concurrency(FunctionName=f["FunctionName"]).get(
                "ReservedConcurrentExecutions")
        except ClientError:
            reserved = None
        return FunctionConfig(name=f["FunctionName"], arn=f["FunctionArn"], code_sha=f.get("CodeSha256", ""),
                              handler=f.get("Handler", "handler.handler"), runtime=f.get("Runtime", "python3.11"),
                              timeout_s=float(f.get("Timeout", 3)), memory_mb=int(f.get("MemorySize", 128)),
                              env=dict((f.get("Environment") or {}).get("Variables") or {}), reserved=reserved)

    def get(self, name: str) -> FunctionConfig:
        config = self._configs.get(name)
        if config is None and self.clock.monotonic() - self._last_refresh > 1.0:
            try:
                self.refresh()   # a function created a moment ago
            except Exception as e:
                raise ServiceUnavailable(f"the Lambda API is not answering: {e}") from e
            config = self._configs.get(name)
        if config is None:
            raise ResourceNotFound(f"Function not found: {name}")
        return config

    def all(self) -> list[FunctionConfig]:
        return sorted(self._configs.values(), key=lambda c: c.name)
