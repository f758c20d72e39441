"""Names of every AWS resource mk1 owns, derived in one place."""
from __future__ import annotations

FUNCTIONS = ("RuntimeAlpha", "RuntimeBeta")
FUNCTION_DIRS = {"RuntimeAlpha": "alpha", "RuntimeBeta": "beta"}
USERS = ("user1", "user2", "admin")
RESERVED_CONCURRENCY = 3

LAMBDA_ROLE = "mk1-lambda-role"
USERS_SECRET = "mk1/users"
USAGE_TABLE = "mk1-usage"
USAGE_BY_FUNCTION_INDEX = "by-function"
RESULTS_TABLE = "mk1-async-results"
LEASES_TABLE = "mk1-leases"
CODE_BUCKET = "mk1-code"


def queue_name(function: str) -> str:
    return f"mk1-{function}-queue"


def dlq_name(function: str) -> str:
    return f"mk1-{function}-dlq"


def log_group(function: str) -> str:
    return f"/aws/lambda/{function}"


def code_key(function: str, sha256_hex: str) -> str:
    return f"{function}/{sha256_hex}.zip"
