"""The Lambda executor (MK1_EXECUTOR=lambda): run calls through a Lambda API, not local containers.

mk1 keeps authentication, authorization, admission, queueing and usage; only the
execution moves — to LocalStack with Docker, to AWS, or to another mk1. It has the
same `run(invocation, config) -> (Outcome, ExecInfo)` shape as assign.FunctionPool.
A throttle from that Lambda API (429) keeps the call waiting, holding its mk1 slot,
and retries with backoff until the function's timeout: to the caller it is queueing.
"""
from __future__ import annotations

import base64
import configparser
import json
import logging
import threading

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from my_mk1_homework import run_header

from chalicelib.execute.outcomes import lambda_error
from chalicelib.model import ExecInfo, FunctionConfig, Invocation, Outcome

log = logging.getLogger("mk1.executor")

MAX_THROTTLE_BACKOFF_S = 2.0


def _session(credentials: str, region: str) -> boto3.session.Session:
    """credentials: "FILE#PROFILE" of a shared-credentials file, or empty for the default chain."""
    if not credentials:
        return boto3.session.Session(region_name=region)
    path, _, profile = credentials.partition("#")
    cfg = configparser.ConfigParser()
    if not cfg.read(path) or (profile or "default") not in cfg:
        raise ValueError(f"MK1_EXECUTOR_CREDENTIALS: no profile {profile or 'default'!r} in {path}")
    p = cfg[profile or "default"]
    return boto3.session.Session(aws_access_key_id=p["aws_access_key_id"],
                                 aws_secret_access_key=p["aws_secret_access_key"], region_name=region)


class LambdaExecutor:
    def __init__(self, name: str, endpoint: str, credentials: str, region: str, clock):
        self.name, self.endpoint, self.clock = name, endpoint or None, clock
        self.client = _session(credentials, region).client(
            "lambda", endpoint_url=self.endpoint,
            config=Config(retries={"total_max_attempts": 1}, read_timeout=900, max_pool_connections=64))
        self.cold_starts = 0
        self._where = f"lambda:{endpoint or 'aws'}"

    def prepare(self, inv: Invocation, config: FunctionConfig, wake=None) -> bool:
        """FunctionPool's direct hand-off: a remote Lambda API has no container to hand to."""
        return False

    def run(self, inv: Invocation, config: FunctionConfig, release=None) -> tuple[Outcome, ExecInfo]:
        """`release` (FunctionPool's early slot release) is not used: the slot is freed on return."""
        started = self.clock.monotonic()
        started_wall = self.clock.wall_of(started)
        deadline = started + config.timeout_s
        backoff = 0.05
        while True:
            try:
                r = self.client.invoke(FunctionName=config.name, Qualifier=config.version, Payload=inv.payload,
                                       LogType="Tail")
                break
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code", "")
                if code == "TooManyRequestsException" and self.clock.monotonic() + backoff < deadline:
                    threading.Event().wait(backoff)
                    backoff = min(backoff * 2, MAX_THROTTLE_BACKOFF_S)
                    continue
                return self._failed(f"the Lambda API answered {code}: {e.response.get('Error', {}).get('Message')}",
                                    started_wall, started)
            except BotoCoreError as e:
                return self._failed(f"the Lambda API at {self._where} did not answer: {e}", started_wall, started)
        payload = r["Payload"].read()
        headers = r["ResponseMetadata"]["HTTPHeaders"]
        if r.get("LogResult"):
            inv.logs.extend(base64.b64decode(r["LogResult"]).decode("utf-8", "replace").splitlines())
        if r.get("FunctionError"):
            outcome = Outcome("function_error", payload, _error_type(payload))
            if outcome.error_type == "Sandbox.Timedout":
                outcome.status = "timeout"
        else:
            outcome = Outcome("success", payload)
        elapsed_ms = (self.clock.monotonic() - started) * 1000
        ran = run_header.run_of(headers)   # when the Lambda API is another mk1; AWS sends none
        cold = ran.get("cold") == "true"
        self.cold_starts += cold
        init_ms = run_header.number(ran, "init-ms")
        duration = run_header.number(ran, "duration-ms")
        if duration is None:
            duration = elapsed_ms - (init_ms or 0)
        info = ExecInfo(ran.get("container") or self._where, "lambda", cold, init_ms, duration, None,
                        started_wall, started_wall + elapsed_ms / 1000)
        return outcome, info

    def _failed(self, message: str, started_wall: float, started: float) -> tuple[Outcome, ExecInfo]:
        log.warning("%s: %s", self.name, message)
        elapsed = self.clock.monotonic() - started
        return (Outcome("crash", lambda_error(message, "Mk1.ExecutorError"), "Mk1.ExecutorError"),
                ExecInfo(self._where, "lambda", False, None, elapsed * 1000, None, started_wall,
                         started_wall + elapsed))

    # the pool interface, for status and housekeeping: nothing local to manage
    def reap(self) -> list[str]:
        return []

    def shutdown(self) -> None:
        pass

    def describe(self) -> list[dict]:
        return []


def _error_type(payload: bytes) -> str:
    try:
        return json.loads(payload).get("errorType") or "Unhandled"
    except (ValueError, AttributeError):
        return "Unhandled"
