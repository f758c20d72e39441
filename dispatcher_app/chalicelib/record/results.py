"""Results of async (Event) invocations, kept so a client can fetch them by request id.

A DynamoDB item holds at most 400 KB: a larger answer goes to S3 (payloads.py) and the
item keeps its key.
"""
from __future__ import annotations

import base64
import threading
import time

from infra import names

from chalicelib.admit import payloads
from chalicelib.model import Outcome


class Results:
    """In memory for speed, in DynamoDB (mk1-async-results) so they outlive the dispatcher."""

    def __init__(self, ddb, s3):
        self.ddb, self.s3 = ddb, s3
        self._mem: dict[str, dict] = {}
        self._lock = threading.Lock()

    def pending(self, request_id: str, function: str, user: str) -> None:
        self._put({"request_id": request_id, "function": function, "user": user, "status": "queued",
                   "attempts": 0, "updated_at": time.time()})

    def update(self, request_id: str, status: str, outcome: Outcome, attempts: int) -> None:
        current = self.get(request_id) or {"request_id": request_id}
        current.pop("payload", None)
        packed = payloads.pack(self.s3, outcome.payload, f"result-{request_id}")
        stored = {"payload": packed["b64"]} if "b64" in packed else {"payload_s3": packed["s3"]}
        with self._lock:   # memory keeps the answer itself; the item may point to S3
            self._mem[request_id] = {**current, "status": status, "attempts": attempts,
                                     "function_error": outcome.error_type if outcome.is_error else None,
                                     "payload": base64.b64encode(outcome.payload).decode()}
        self._put({**current, "status": status, "attempts": attempts, "updated_at": time.time(),
                   "function_error": outcome.error_type if outcome.is_error else None, **stored}, remember=False)

    def _put(self, item: dict, remember: bool = True) -> None:
        if remember:
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
        out = {k: (None if "NULL" in v else float(v["N"]) if "N" in v else v["S"]) for k, v in item.items()}
        if out.get("payload_s3"):
            out["payload"] = base64.b64encode(payloads.unpack(self.s3, {"s3": out.pop("payload_s3")})).decode()
        return out
