"""Lambda handler for RuntimeAlpha: load() once per container (at import), generate() per call."""
import time

from runtime_base import parse_prompt
from runtime_alpha import RuntimeAlpha

RUNTIME = RuntimeAlpha()
RUNTIME.load()


def handler(event, context):
    prompt = parse_prompt(event)
    started = time.monotonic()
    response = RUNTIME.generate(prompt)
    return {
        "response": response,
        "runtime": RUNTIME.name,
        "generate_ms": round((time.monotonic() - started) * 1000, 3),
    }
