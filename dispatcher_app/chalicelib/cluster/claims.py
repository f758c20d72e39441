"""Cluster mode: exactly one party decides the fate of a queued synchronous call.

A queued sync call's message may reach any dispatcher (competing consumers), and its
caller waits on the dispatcher holding the connection, which may give up (deadline,
hang-up). Each of them first claims the call with a conditional put; the first one
wins: the runner runs it and answers, or the owner answers "gave up" — never both,
so there is one answer and one usage record. Claims stay (with a TTL attribute) so a
message delivered again after its runner died mid-way is not run twice.
"""
from __future__ import annotations

from botocore.exceptions import ClientError

from infra import names

KEEP_S = 24 * 3600


class Claims:
    def __init__(self, ddb, instance_id: str, clock):
        self.ddb, self.instance_id, self.clock = ddb, instance_id, clock

    def claim(self, request_id: str, state: str) -> bool:
        """state is "running" (a runner) or "given-up" (the owner). True if this claim won."""
        now = self.clock.time()
        try:
            self.ddb.put_item(
                TableName=names.RESULTS_TABLE,
                Item={"request_id": {"S": "claim:" + request_id}, "state": {"S": state},
                      "by": {"S": self.instance_id}, "at": {"N": f"{now:.3f}"},
                      names.RESULTS_TTL_ATTRIBUTE: {"N": str(int(now + KEEP_S))}},
                ConditionExpression="attribute_not_exists(request_id)")
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self, request_id: str) -> dict | None:
        item = self.ddb.get_item(TableName=names.RESULTS_TABLE, Key={"request_id": {"S": "claim:" + request_id}},
                                 ConsistentRead=True).get("Item")
        return {"state": item["state"]["S"], "by": item["by"]["S"]} if item else None
