"""Cluster mode: reserved concurrency held globally with DynamoDB leases.

A function with reserved concurrency N has N slot items (function, slot 0..N-1). A
dispatcher takes a slot with a conditional put that succeeds only if the slot is
free or its lease has expired, renews its leases while the calls run, and deletes
them when they end. A dead dispatcher stops renewing, so its slots come back after
MK1_LEASE_MS — no coordinator, no lost capacity.
"""
from __future__ import annotations

import logging
import random
import threading

from botocore.exceptions import ClientError

from infra import names

log = logging.getLogger("mk1.leases")


class Leases:
    def __init__(self, ddb, instance_id: str, lease_s: float, clock):
        self.ddb, self.instance_id, self.lease_s, self.clock = ddb, instance_id, lease_s, clock
        self._held: dict[tuple[str, int], str] = {}      # (function, slot) -> request id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._renew_loop, daemon=True, name="lease-renew").start()

    def _now_ms(self) -> int:
        return int(self.clock.time() * 1000)

    def try_acquire(self, function: str, cap: int, request_id: str) -> int | None:
        """A free slot (or one whose lease ran out) for this call, or None if all N are taken."""
        now = self._now_ms()
        with self._lock:
            mine = {slot for (fn, slot) in self._held if fn == function}
        guess = [s for s in range(cap) if s not in mine]
        if not guess:
            return None
        # A free system answers the first write; a busy one answers one read, which names the
        # free slots (trying every slot blindly would cost a failed write per busy slot).
        first = random.choice(guess)
        if self._put(function, first, request_id, now):
            return first
        taken = {int(i["slot"]["N"]) for i in self._live(function)}
        free = [s for s in guess if s not in taken and s != first]
        random.shuffle(free)   # spread dispatchers over the slots instead of all racing for one
        for slot in free:
            if self._put(function, slot, request_id, now):
                return slot
        return None

    def _put(self, function: str, slot: int, request_id: str, now: int) -> bool:
        try:
            self.ddb.put_item(
                TableName=names.LEASES_TABLE,
                Item={"function": {"S": function}, "slot": {"N": str(slot)},
                      "owner": {"S": self.instance_id}, "request_id": {"S": request_id},
                      "expires_at": {"N": str(now + int(self.lease_s * 1000))}},
                ConditionExpression="attribute_not_exists(request_id) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}})
        except ClientError as e:
            if e.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        with self._lock:
            self._held[(function, slot)] = request_id
        return True

    def release(self, function: str, slot: int, request_id: str) -> None:
        with self._lock:
            self._held.pop((function, slot), None)
        try:
            self.ddb.delete_item(TableName=names.LEASES_TABLE,
                                 Key={"function": {"S": function}, "slot": {"N": str(slot)}},
                                 ConditionExpression="request_id = :r",
                                 ExpressionAttributeValues={":r": {"S": request_id}})
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                log.warning("releasing lease %s/%s failed (%s); it expires by itself", function, slot, e)
        except Exception as e:
            log.warning("releasing lease %s/%s failed (%s); it expires by itself", function, slot, e)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._lock:
                held = list(self._held.items())
            for (function, slot), request_id in held:
                try:
                    self.ddb.update_item(
                        TableName=names.LEASES_TABLE, Key={"function": {"S": function}, "slot": {"N": str(slot)}},
                        UpdateExpression="SET expires_at = :e", ConditionExpression="request_id = :r",
                        ExpressionAttributeValues={":e": {"N": str(self._now_ms() + int(self.lease_s * 1000))},
                                                   ":r": {"S": request_id}})
                except Exception as e:
                    log.warning("renewing lease %s/%s failed: %s", function, slot, e)

    def holds(self, function: str, request_id: str) -> bool:
        """Does some dispatcher hold a live lease for this call?"""
        return any(i.get("request_id", {}).get("S") == request_id for i in self._live(function))

    def _live(self, function: str) -> list[dict]:
        resp = self.ddb.query(TableName=names.LEASES_TABLE, KeyConditionExpression="#f = :f", ConsistentRead=True,
                              ExpressionAttributeNames={"#f": "function"},
                              ExpressionAttributeValues={":f": {"S": function}})
        now = self._now_ms()
        return [i for i in resp["Items"] if int(i["expires_at"]["N"]) >= now]

    def running(self, function: str) -> int:
        """Unexpired leases of a function across the cluster (for status)."""
        return len(self._live(function))

    def stop(self) -> None:
        self._stop.set()
