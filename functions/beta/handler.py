"""Lambda handler for RuntimeBeta: load() once per container (at import), generate() per call."""
from runtime_base import lambda_handler
from runtime_beta import RuntimeBeta

RUNTIME = RuntimeBeta()
RUNTIME.load()

handler = lambda_handler(RUNTIME)
