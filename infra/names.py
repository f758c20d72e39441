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
RESULTS_TTL_ATTRIBUTE = "expires_at"   # DynamoDB TTL on the results table (cluster claims)
LEASES_TABLE = "mk1-leases"
CODE_BUCKET = "mk1-code"
PAYLOAD_PREFIX = "calls/"   # queued calls' payloads over the message limit, in CODE_BUCKET


def queue_name(function: str) -> str:
    return f"mk1-{function}-queue"


def reply_queue_name(instance_id: str) -> str:
    """Cluster mode: answers for the sync calls one dispatcher holds the connections of."""
    return f"mk1-replies-{instance_id[:16]}"


def dlq_name(function: str) -> str:
    return f"mk1-{function}-dlq"


def log_group(function: str) -> str:
    return f"/aws/lambda/{function}"


def code_key(function: str, sha256_hex: str) -> str:
    return f"{function}/{sha256_hex}.zip"
