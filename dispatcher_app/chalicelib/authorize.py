"""Authorize: may this user do this action on this resource? IAM policy evaluation.

`evaluate` is pure: (policy documents, action, resource) -> ALLOW / DENY / NO_MATCH.
An explicit Deny wins over any Allow; no matching Allow means deny (default deny).
Wildcards `*` and `?` work in Action (case-insensitive) and Resource (case-sensitive).
Statements with a Condition are not understood here, so they never grant (a
conservative reading) but a conditional Deny still denies.
"""
from __future__ import annotations

import enum
import json
import logging
import re
import threading
from functools import lru_cache
from urllib.parse import unquote

log = logging.getLogger("mk1.authorize")

MAX_DECISIONS = 10_000   # remembered per policy generation


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    NO_MATCH = "no_match"


@lru_cache(maxsize=4096)
def _pattern(glob: str, ignore_case: bool) -> re.Pattern:
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in glob)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _matches(patterns, value: str, ignore_case: bool) -> bool:
    return any(isinstance(p, str) and _pattern(p, ignore_case).match(value) for p in _as_list(patterns))


def _statement_applies(st: dict, action: str, resource: str) -> bool:
    if "Action" in st:
        ok_action = _matches(st["Action"], action, True)
    else:
        ok_action = "NotAction" in st and not _matches(st["NotAction"], action, True)
    if "Resource" in st:
        ok_resource = _matches(st["Resource"], resource, False)
    else:
        ok_resource = "NotResource" in st and not _matches(st["NotResource"], resource, False)
    return ok_action and ok_resource


def evaluate(policies: list[dict], action: str, resource: str) -> Decision:
    allowed = False
    for doc in policies:
        if not isinstance(doc, dict):
            continue
        for st in _as_list(doc.get("Statement")):
            if not isinstance(st, dict) or not _statement_applies(st, action, resource):
                continue
            effect = st.get("Effect")
            if effect == "Deny":
                return Decision.DENY
            if effect == "Allow" and "Condition" not in st:
                allowed = True
    return Decision.ALLOW if allowed else Decision.NO_MATCH


def _doc(raw) -> dict:
    if isinstance(raw, dict):
        return raw
    return json.loads(unquote(raw))


def _default_version(policy: dict) -> dict | None:
    """The default version's document of a GetAccountAuthorizationDetails policy entry."""
    for v in policy.get("PolicyVersionList", []):
        if v.get("IsDefaultVersion"):
            return _doc(v["Document"])
    return None


class PolicyStore:
    """Each user's policy documents (inline, attached, and their groups'), read from IAM.

    Refreshed in the background, so a changed policy takes effect within one refresh
    interval and the call path never waits on IAM. One GetAccountAuthorizationDetails read
    (a page per 100 entities) replaces the 4+ reads per user and group it would otherwise take
    every second; only AWS-managed policies, which it is not asked to list, are read one by one.
    """

    def __init__(self, iam):
        self.iam = iam
        # The documents and the decisions made from them, replaced together (one reference): a
        # decision is never taken from documents other than its own.
        self._known: tuple[dict[str, list[dict]], dict[tuple[str, str, str], Decision]] = ({}, {})
        self._lock = threading.Lock()

    def refresh(self, users: list[str]) -> None:
        try:
            fresh = self._read(set(users))
        except Exception as e:  # keep the last known policies
            log.warning("reading the IAM policies failed: %s", e)
            return
        with self._lock:
            if fresh != self._known[0]:   # read every second, mostly unchanged: keep the decisions
                self._known = (fresh, {})

    def decide(self, user: str, action: str, resource: str) -> Decision:
        """evaluate() on the user's documents, made once per (user, action, resource) while they
        stay the same: a call's authorization is then a lookup, not a walk through every statement."""
        docs, decisions = self._known
        key = (user, action, resource)
        decision = decisions.get(key)
        if decision is None:
            decision = evaluate(docs.get(user, []), action, resource)
            if len(decisions) < MAX_DECISIONS:   # resources come from requests: bounded
                decisions[key] = decision
        return decision

    def _read(self, users: set[str]) -> dict[str, list[dict]]:
        details: dict[str, list] = {"UserDetailList": [], "GroupDetailList": [], "Policies": []}
        pages = self.iam.get_paginator("get_account_authorization_details").paginate(
            Filter=["User", "Group", "LocalManagedPolicy"])
        for page in pages:
            for key, items in details.items():
                items.extend(page.get(key, []))
        managed = {p["Arn"]: _default_version(p) for p in details["Policies"]}

        def attached(entity: dict) -> list[dict]:
            out = []
            for a in entity.get("AttachedManagedPolicies", []):
                arn = a["PolicyArn"]
                if managed.get(arn) is None:
                    managed[arn] = self._managed(arn)   # AWS-managed (or listed without its default)
                out.append(managed[arn])
            return out

        def own(entity: dict, inline_key: str) -> list[dict]:
            return [_doc(p["PolicyDocument"]) for p in entity.get(inline_key, [])] + attached(entity)

        groups = {g["GroupName"]: g for g in details["GroupDetailList"]}
        group_docs: dict[str, list[dict]] = {}
        docs = {}
        for u in details["UserDetailList"]:
            if u["UserName"] not in users:
                continue
            mine = own(u, "UserPolicyList")
            for name in u.get("GroupList", []):
                if name not in group_docs:
                    group_docs[name] = own(groups[name], "GroupPolicyList") if name in groups else []
                mine += group_docs[name]
            docs[u["UserName"]] = mine
        return docs

    def _managed(self, arn: str) -> dict:
        version = self.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        return _doc(self.iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])

    def policies(self, user: str) -> list[dict]:
        return self._known[0].get(user, [])
