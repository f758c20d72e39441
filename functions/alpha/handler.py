"""Lambda handler for RuntimeAlpha: load() once per container (at import), generate() per call."""
from runtime_base import lambda_handler
from runtime_alpha import RuntimeAlpha

RUNTIME = RuntimeAlpha()
RUNTIME.load()

handler = lambda_handler(RUNTIME)
