"""Results of async (Event) invocations, kept so a client can fetch them by request id."""
from __future__ import annotations

import base64
import threading
import time

from infra import names

from .model import Outcome


class Results:
    """In memory for speed, in DynamoDB (mk1-async-results) so they outlive the dispatcher."""

    def __init__(self, ddb):
        self.ddb = ddb
        self._mem: dict[str, dict] = {}
        self._lock = threading.Lock()

    def pending(self, request_id: str, function: str, user: str) -> None:
        self._put({"request_id": request_id, "function": function, "user": user, "status": "queued",
                   "attempts": 0, "updated_at": time.time()})

    def update(self, request_id: str, status: str, outcome: Outcome, attempts: int) -> None:
        current = self.get(request_id) or {"request_id": request_id}
        self._put({**current, "status": status, "attempts": attempts, "updated_at": time.time(),
                   "function_error": outcome.error_type if outcome.is_error else None,
                   "payload": base64.b64encode(outcome.payload).decode()})

    def _put(self, item: dict) -> None:
        with self._lock:
            self._mem[item["request_id"]] = item
        self.ddb.put_item(TableName=names.RESULTS_TABLE, Item={
            k: ({"NULL": True} if v is None else {"N": str(v)} if isinstance(v, (int, float)) else {"S": str(v)})
            for k, v in item.items()})

    def get(self, request_id: str) -> dict | None:
        with self._lock:
            if request_id in self._mem:
                return dict(self._mem[request_id])
        resp = self.ddb.get_item(TableName=names.RESULTS_TABLE, Key={"request_id": {"S": request_id}})
        item = resp.get("Item")
        if not item:
            return None
        return {k: (None if "NULL" in v else float(v["N"]) if "N" in v else v["S"]) for k, v in item.items()}
