import json
from pathlib import Path

from hypothesis import given, strategies as st

from chalicelib.authorize import Decision, PolicyStore, evaluate

POLICIES = Path(__file__).resolve().parents[2] / "infra" / "policies"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_shipped_policies_give_each_user_exactly_their_functions():
    """user1 and user2 their one function (any version or alias of it); admin every function."""
    p = {u: [json.loads((POLICIES / f"{u}.json").read_text())] for u in ("user1", "user2", "admin")}
    want = {"user1": {"RuntimeAlpha"}, "user2": {"RuntimeBeta"}, "admin": {"RuntimeAlpha", "RuntimeBeta", "Other"}}
    for user, fns in want.items():
        for fn in ("RuntimeAlpha", "RuntimeBeta", "Other"):
            expected = Decision.ALLOW if fn in fns else Decision.NO_MATCH
            for resource in (ARN.format(fn), ARN.format(fn) + ":1", ARN.format(fn) + ":live"):
                assert evaluate(p[user], "lambda:InvokeFunction", resource) is expected, (user, resource)


def test_explicit_deny_wins_and_wildcards_match():
    allow_all = {"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}
    deny_beta = {"Effect": "Deny", "Action": "lambda:Invoke*", "Resource": "arn:aws:lambda:*:*:function:RuntimeB?ta"}
    assert evaluate([doc(allow_all, deny_beta)], "lambda:InvokeFunction", ARN.format("RuntimeBeta")) is Decision.DENY
    assert evaluate([doc(allow_all), doc(deny_beta)], "lambda:InvokeFunction",
                    ARN.format("RuntimeAlpha")) is Decision.ALLOW


def test_action_is_case_insensitive_resource_is_not():
    st_ = {"Effect": "Allow", "Action": "LAMBDA:invokefunction", "Resource": ARN.format("RuntimeAlpha")}
    assert evaluate([doc(st_)], "lambda:InvokeFunction", ARN.format("RuntimeAlpha")) is Decision.ALLOW
    assert evaluate([doc(st_)], "lambda:InvokeFunction", ARN.format("runtimealpha")) is Decision.NO_MATCH


def test_not_action_not_resource_and_conditions():
    st_ = {"Effect": "Allow", "NotAction": "iam:*", "NotResource": ARN.format("RuntimeBeta")}
    assert evaluate([doc(st_)], "lambda:InvokeFunction", ARN.format("RuntimeAlpha")) is Decision.ALLOW
    assert evaluate([doc(st_)], "lambda:InvokeFunction", ARN.format("RuntimeBeta")) is Decision.NO_MATCH
    cond = {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
    assert evaluate([doc(cond)], "lambda:InvokeFunction", ARN.format("RuntimeAlpha")) is Decision.NO_MATCH


def test_garbage_documents_never_allow():
    for bad in [None, "x", {"Statement": "nope"}, {"Statement": [1, None, {"Effect": "Allow"}]}]:
        assert evaluate([bad], "lambda:InvokeFunction", ARN.format("RuntimeAlpha")) is Decision.NO_MATCH


statement = st.fixed_dictionaries({
    "Effect": st.sampled_from(["Allow", "Deny", "Maybe"]),
    "Action": st.one_of(st.text(max_size=20), st.lists(st.sampled_from(["lambda:*", "*", "lambda:InvokeFunction",
                                                                        "s3:*"]), max_size=3)),
    "Resource": st.one_of(st.text(max_size=30), st.sampled_from(["*", ARN.format("*"), ARN.format("RuntimeAlpha")])),
})


@given(st.lists(st.lists(statement, max_size=4).map(lambda s: doc(*s)), max_size=3),
       st.sampled_from(["RuntimeAlpha", "RuntimeBeta"]))
def test_fuzz_deny_always_wins_and_no_crash(policies, fn):
    decision = evaluate(policies, "lambda:InvokeFunction", ARN.format(fn))
    with_deny = policies + [doc({"Effect": "Deny", "Action": "*", "Resource": "*"})]
    assert decision in (Decision.ALLOW, Decision.DENY, Decision.NO_MATCH)
    assert evaluate(with_deny, "lambda:InvokeFunction", ARN.format(fn)) is Decision.DENY


class _Iam:
    """GetAccountAuthorizationDetails, one page: each user with inline policy documents."""

    def __init__(self):
        self.docs: dict[str, list[dict]] = {}

    def get_paginator(self, name):
        assert name == "get_account_authorization_details"
        return self

    def paginate(self, Filter):
        return [{"UserDetailList": [{"UserName": u, "UserPolicyList": [{"PolicyDocument": d} for d in ds]}
                                    for u, ds in self.docs.items()]}]


def test_policy_store_decisions_follow_the_documents():
    iam = _Iam()
    allow_alpha = doc({"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": ARN.format("RuntimeAlpha")})
    iam.docs = {"user1": [allow_alpha]}
    store = PolicyStore(iam)
    store.refresh(["user1", "user2"])
    alpha, beta = ARN.format("RuntimeAlpha"), ARN.format("RuntimeBeta")
    for _ in range(2):   # the second time from what the first decided
        assert store.decide("user1", "lambda:InvokeFunction", alpha) is Decision.ALLOW
        assert store.decide("user1", "lambda:InvokeFunction", beta) is Decision.NO_MATCH
        assert store.decide("user2", "lambda:InvokeFunction", alpha) is Decision.NO_MATCH
    store.refresh(["user1", "user2"])   # unchanged: the same decisions
    assert store.decide("user1", "lambda:InvokeFunction", alpha) is Decision.ALLOW
    iam.docs = {"user1": [doc({"Effect": "Deny", "Action": "lambda:*", "Resource": "*"}), allow_alpha],
                "user2": [allow_alpha]}
    store.refresh(["user1", "user2"])   # changed: decided again, from the new documents
    assert store.decide("user1", "lambda:InvokeFunction", alpha) is Decision.DENY
    assert store.decide("user2", "lambda:InvokeFunction", alpha) is Decision.ALLOW
    iam.docs = {}
    store.refresh(["user1", "user2"])   # a user's policies gone: nothing allowed any more
    assert store.decide("user2", "lambda:InvokeFunction", alpha) is Decision.NO_MATCH
