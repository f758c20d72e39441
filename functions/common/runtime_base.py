"""What RuntimeAlpha and RuntimeBeta share: simulated load/generate and event checks.

Packaged into each function's zip beside its handler (infra/package.py), so a
function's code is self-contained exactly as a Lambda deployment package is.
"""
from __future__ import annotations

import base64
import json
import os
import time

MAX_PROMPT_CHARS = 100_000


class InvalidEvent(ValueError):
    """The event is not {"prompt": "<text>"}; the message says what is wrong."""


def parse_prompt(event: object) -> str:
    if not isinstance(event, dict):
        raise InvalidEvent(f'event must be a JSON object like {{"prompt": "hi"}}, got {type(event).__name__}')
    if "prompt" not in event:
        raise InvalidEvent('event has no "prompt" field; send {"prompt": "<text>"}')
    prompt = event["prompt"]
    if not isinstance(prompt, str):
        raise InvalidEvent(f'"prompt" must be a string, got {type(prompt).__name__}')
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidEvent(f'"prompt" is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}')
    return prompt


def _from_url(event: object) -> bool:
    """A function URL's payload format 2.0 event (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html)."""
    return isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event


def _url_event(event: dict) -> object:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    if body.strip():
        try:
            return json.loads(body)
        except ValueError:
            raise InvalidEvent('the request body must be JSON like {"prompt": "hi"}') from None
    query = event.get("queryStringParameters") or {}
    return {"prompt": query["prompt"]} if "prompt" in query else {}


def seconds_from_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return max(0.0, float(raw)) if raw.strip() else default
    except ValueError:
        return default


class SimulatedRuntime:
    """A model-like runtime: an expensive load() once, then generate() per call."""

    name = "Runtime"
    default_load_seconds = 1.0
    default_generate_seconds = 1.0

    def __init__(self, sleep=time.sleep):
        self._sleep = sleep
        self.load_seconds = seconds_from_env("LOAD_SECONDS", self.default_load_seconds)
        self.generate_seconds = seconds_from_env("GENERATE_SECONDS", self.default_generate_seconds)
        self.loaded = False

    def load(self) -> None:
        self._sleep(self.load_seconds)
        self.loaded = True

    def generate(self, prompt: str) -> str:
        if not self.loaded:
            raise RuntimeError(f"{self.name}.generate() called before load()")
        self._sleep(self.generate_seconds)
        return self.compose(prompt)

    def compose(self, prompt: str) -> str:  # pragma: no cover - each runtime overrides
        raise NotImplementedError


def lambda_handler(runtime: SimulatedRuntime):
    """The standard Lambda handler over a loaded runtime: {"prompt": ...} -> {"response": ...}.

    Triggered by an SQS event source mapping ({"Records": [...]} from aws:sqs), each message's body is
    one event ({"prompt": ...}); a message that is not answers in batchItemFailures (AWS's partial
    batch response), so only it is delivered again."""
    def handler(event, context):
        if isinstance(event, dict) and _from_sqs(event):
            return _each_message(runtime, event["Records"])
        if _from_url(event):   # a function URL's request: the prompt in its JSON body or ?prompt=
            event = _url_event(event)
        prompt = parse_prompt(event)
        started = time.monotonic()
        response = runtime.generate(prompt)
        return {"response": response, "runtime": runtime.name,
                "generate_ms": round((time.monotonic() - started) * 1000, 3)}
    return handler


def _from_sqs(event: dict) -> bool:
    records = event.get("Records")
    return isinstance(records, list) and bool(records) and all(
        isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)


def _each_message(runtime: SimulatedRuntime, records: list) -> dict:
    responses, failures = [], []
    for r in records:
        try:
            body = json.loads(r.get("body") or "")
            responses.append({"messageId": r["messageId"], "response": runtime.generate(parse_prompt(body))})
        except (ValueError, InvalidEvent) as e:
            print(f"message {r.get('messageId')}: {e}")
            failures.append({"itemIdentifier": r.get("messageId")})
    return {"batchItemFailures": failures, "responses": responses, "runtime": runtime.name}
