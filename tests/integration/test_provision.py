"""Provisioning against a real moto server: complete, least-privilege, idempotent."""
import json
import os
import stat

import pytest

from infra import names

pytestmark = pytest.mark.localstack   # runs on LocalStack too (make test-localstack)


def test_provisioned_resources(system):
    lam, sqs, iam = system.aws("lambda"), system.aws("sqs"), system.aws("iam")
    for fn in names.FUNCTIONS:
        assert lam.get_function_concurrency(FunctionName=fn)["ReservedConcurrentExecutions"] == 3
        cfg = lam.get_function(FunctionName=fn)["Configuration"]
        assert cfg["Handler"] == "handler.handler" and cfg["Runtime"].startswith("python3.1")
        assert cfg["Environment"]["Variables"]["LOAD_SECONDS"] == "0.2"
    urls = sqs.list_queues()["QueueUrls"]
    for fn in names.FUNCTIONS:
        assert any(u.endswith(names.queue_name(fn)) for u in urls)
        assert any(u.endswith(names.dlq_name(fn)) for u in urls)
    assert {u["UserName"] for u in iam.list_users()["Users"]} >= {"user1", "user2", "admin"}
    doc = iam.get_user_policy(UserName="user1", PolicyName="mk1-user1")["PolicyDocument"]
    doc = doc if isinstance(doc, dict) else json.loads(doc)
    assert "RuntimeBeta" not in json.dumps(doc)
    mode = stat.S_IMODE(os.stat(system.home / "credentials").st_mode)
    assert mode == 0o600
    tables = system.aws("dynamodb").list_tables()["TableNames"]
    assert names.USAGE_TABLE in tables and names.RESULTS_TABLE in tables
    groups = [g["logGroupName"] for g in system.aws("logs").describe_log_groups()["logGroups"]]
    assert "/aws/lambda/RuntimeAlpha" in groups


def test_provisioning_twice_changes_nothing(system):
    before_keys = {u: system.keys(u) for u in names.USERS}
    lam = system.aws("lambda")
    sha_before = lam.get_function(FunctionName="RuntimeAlpha")["Configuration"]["CodeSha256"]
    out = system.provision()
    assert {u: system.keys(u) for u in names.USERS} == before_keys
    assert out.functions["RuntimeAlpha"] == sha_before
    assert len(system.aws("iam").list_access_keys(UserName="user1")["AccessKeyMetadata"]) == 1
    assert system.function("RuntimeAlpha", "user1").generate("still works")
