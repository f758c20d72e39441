"""The read side: async results, usage and the billing report, status — what callers ask about.

Reads are authorized as calls are: a user sees their own async results and usage; one whose
policies allow a Scan of the usage table (admin) sees everyone's.
"""
from __future__ import annotations

import dataclasses

from botocore.exceptions import BotoCoreError, ClientError

from infra import names

from chalicelib import authorize as authz
from chalicelib.authenticate import Identity
from chalicelib.errors import ResourceNotFound, ServiceUnavailable
from chalicelib.invoke import account_of
from chalicelib.record import queries as usage_q
from chalicelib.request import HttpRequest


class Queries:
    def __init__(self, parts):
        self.p = parts

    def health(self) -> dict:
        p = self.p
        return {"status": "ok", "backend": p.backend.name, "functions": [c.name for c in p.registry.all()]}

    def async_result(self, req: HttpRequest, request_id: str) -> dict:
        who = self.p.invoker.authenticate(req)
        result = self.p.results.get(request_id)
        if result is None or (result.get("user") != who.user and not self.is_admin_reader(who)):
            raise ResourceNotFound(f"No async invocation {request_id} for user {who.user}")
        return result

    def usage(self, req: HttpRequest) -> list[dict]:
        who = self.p.invoker.authenticate(req)
        q = {k: v[0] for k, v in req.query.items() if v}
        user = q.get("user") or None
        if not self.is_admin_reader(who):
            user = who.user      # a user sees only their own usage
        try:
            return usage_q.query(self.p.ddb, user=user, function=q.get("function") or None,
                                 since=q.get("since", ""), until=q.get("until", ""))
        except ClientError as e:
            raise ServiceUnavailable(f"the usage table cannot be read right now: {e}") from e

    def usage_report(self, req: HttpRequest) -> dict:
        s = self.p.s
        rows = usage_q.report(self.usage(req), s.MK1_PRICE_GB_SECOND, s.MK1_PRICE_PER_REQUEST)
        return {"rows": rows, "price_gb_second": s.MK1_PRICE_GB_SECOND, "price_per_request": s.MK1_PRICE_PER_REQUEST}

    def is_admin_reader(self, identity: Identity) -> bool:
        """May this user read everyone's usage (Scan on the usage table)?"""
        functions = self.p.registry.all()
        account = account_of(functions[0].arn if functions else "")
        resource = f"arn:aws:dynamodb:{self.p.s.region}:{account}:table/{names.USAGE_TABLE}"
        return self.p.policies.decide(identity.user, "dynamodb:Scan", resource) is authz.Decision.ALLOW

    # -- status --
    def describe_functions(self) -> dict:
        p, out = self.p, {}
        for cfg in p.registry.all():
            adm, pool = p.admissions.get(cfg.name), p.pools.get(cfg.name)
            out[cfg.name] = {
                "arn": cfg.arn, "code_sha256": cfg.code_sha, "memory_mb": cfg.memory_mb,
                "timeout_s": cfg.timeout_s, "reserved_concurrency": cfg.reserved, "throttle": cfg.throttle,
                "event_invoke": dataclasses.asdict(cfg.events),
                **(adm.describe() if adm else {"in_use": 0, "waiting": 0}),
                "containers": pool.describe() if pool else [],
                "cold_starts": pool.cold_starts if pool else 0,
            }
        return out

    def status(self) -> dict:
        p, s = self.p, self.p.s
        return {"backend": p.backend.name, "executor": s.MK1_EXECUTOR, "placement": s.MK1_PLACEMENT,
                "cluster": bool(p.leases), "instance": p.instance_id,
                "keepalive_ms": s.MK1_KEEPALIVE_MS, "aws_endpoint": s.aws_endpoint,
                "functions": self.describe_functions(), "recorder": p.recorder.health(),
                "mappings": p.mappings.describe(),
                "function_urls": p.registry.describe_urls(),
                "queues": self.queue_depths()}

    def queue_depths(self) -> dict:
        out = {}
        for name, adm in list(self.p.admissions.items()):
            try:
                out[name] = adm.queue.depth()
            except (ClientError, BotoCoreError) as e:
                out[name] = {"error": str(e)}
        return out
