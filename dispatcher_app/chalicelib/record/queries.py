"""Reading usage back: queries on the usage table and the billing report (pure)."""
from __future__ import annotations

import statistics
from boto3.dynamodb.types import TypeSerializer

from infra import names

from chalicelib.record.usage import from_item

_ser = TypeSerializer()


def query(ddb, *, user: str | None = None, function: str | None = None, since: str = "",
          until: str = "") -> list[dict]:
    """A user's records (table key) or a function's (the by-function index) over [since, until)."""
    since, until = since or "0000", until or "\uffff"   # key values may not be empty
    rng = {":a": {"S": since}, ":b": {"S": until}}
    if user:
        kw = dict(KeyConditionExpression="#u = :u AND sk BETWEEN :a AND :b",
                  ExpressionAttributeNames={"#u": "user"}, ExpressionAttributeValues={":u": {"S": user}, **rng})
        if function:
            kw["FilterExpression"] = "#f = :f"
            kw["ExpressionAttributeNames"]["#f"] = "function"
            kw["ExpressionAttributeValues"][":f"] = {"S": function}
    elif function:
        kw = dict(IndexName=names.USAGE_BY_FUNCTION_INDEX,
                  KeyConditionExpression="#f = :f AND sk BETWEEN :a AND :b",
                  ExpressionAttributeNames={"#f": "function"},
                  ExpressionAttributeValues={":f": {"S": function}, **rng})
    else:
        return _scan(ddb, since, until)
    items = []
    for page in ddb.get_paginator("query").paginate(TableName=names.USAGE_TABLE, **kw):
        items += [from_item(i) for i in page["Items"]]
    return sorted(items, key=lambda r: r["start"])


def _scan(ddb, since: str, until: str) -> list[dict]:
    items = []
    for page in ddb.get_paginator("scan").paginate(TableName=names.USAGE_TABLE):
        items += [from_item(i) for i in page["Items"]]
    return sorted((r for r in items if since <= r["start"] < until), key=lambda r: r["start"])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def report(records: list[dict], price_gb_s: float, price_request: float) -> list[dict]:
    """Per (user, function): invocations, errors, durations, GB-seconds and estimated cost."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["user"], r["function"]), []).append(r)
    rows = []
    for (user, function), rs in sorted(groups.items()):
        ran = [r for r in rs if r["status"] not in ("throttled", "cancelled")]
        durations = sorted(float(r["duration_ms"]) for r in ran)
        gb_s = sum(r["billed_ms"] / 1000 * r["memory_mb"] / 1024 for r in ran)
        rows.append({
            "user": user, "function": function, "invocations": len(ran),
            "errors": sum(1 for r in ran if r["status"] != "success"),
            "throttled": sum(1 for r in rs if r["status"] == "throttled"),
            "total_duration_ms": round(sum(durations), 3),
            "p50_ms": round(_pct(durations, 50), 3), "p95_ms": round(_pct(durations, 95), 3),
            "billed_ms": sum(int(r["billed_ms"]) for r in ran),
            "gb_seconds": round(gb_s, 6),
            "estimated_cost_usd": round(gb_s * price_gb_s + len(ran) * price_request, 8),
        })
    return rows
