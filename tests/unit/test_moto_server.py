"""The embedded AWS's launcher patches moto for speed only: what SQS answers stays the same."""
import boto3
import pytest
from moto import backends, mock_aws
from moto.core import responses
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs import models as sqs_models
from moto.dynamodb.models.dynamo_type import Item
from moto.sqs.models import SQSBackend, sqs_backends

from infra import moto_server

ORIGINAL_LIST = backends.list_of_moto_modules
ORIGINAL_METHODS = responses.method_names_from_class
ORIGINAL_CHECK = SQSBackend.is_message_valid_based_on_retention_period
ORIGINAL_CLOCK = sqs_models.unix_time, sqs_models.unix_time_millis
ORIGINAL_ITEM_INIT = Item.__init__


@pytest.fixture
def unpatched(monkeypatch):
    monkeypatch.setattr(backends, "list_of_moto_modules", ORIGINAL_LIST)
    monkeypatch.setattr(responses, "method_names_from_class", ORIGINAL_METHODS)
    monkeypatch.setattr(SQSBackend, "is_message_valid_based_on_retention_period", ORIGINAL_CHECK)
    monkeypatch.setattr(sqs_models, "unix_time", ORIGINAL_CLOCK[0])
    monkeypatch.setattr(sqs_models, "unix_time_millis", ORIGINAL_CLOCK[1])
    monkeypatch.setattr(Item, "__init__", ORIGINAL_ITEM_INIT)


def test_every_patch_fits_the_pinned_moto_and_lists_the_same_services(unpatched):
    services = list(ORIGINAL_LIST())
    assert moto_server.apply() == {name: True for name in moto_server.PATCHES}
    assert moto_server.apply() == {name: True for name in moto_server.PATCHES}   # idempotent
    assert list(backends.list_of_moto_modules()) == services and "sqs" in services
    from moto.sqs.responses import SQSResponse
    assert responses.method_names_from_class(SQSResponse) == ORIGINAL_METHODS(SQSResponse)
    assert "receive_message" in responses.method_names_from_class(SQSResponse)


def test_sqs_reads_the_same_clock(unpatched):
    moto_server.apply()
    before = ORIGINAL_CLOCK[0]()
    now_s, now_ms = sqs_models.unix_time(), sqs_models.unix_time_millis()
    after = ORIGINAL_CLOCK[0]()
    assert before - 0.001 <= now_s <= after + 0.001 and before * 1000 - 1 <= now_ms <= after * 1000 + 1
    import datetime
    dt = datetime.datetime(2026, 1, 1)
    assert sqs_models.unix_time(dt) == ORIGINAL_CLOCK[0](dt)


def _retention_scenario() -> list[list[str]]:
    """A 60 s retention queue with one message past it: what successive receives return."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        for body in ("old", "fresh", "fresher"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        queue = sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_queue("q")
        next(m for m in queue._messages if m.body == "old").sent_timestamp -= 61_000
        seen = []
        for _ in range(3):
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            seen.append(sorted(m["Body"] for m in got))
        return seen


def test_retention_is_enforced_as_moto_does(unpatched):
    expected = _retention_scenario()
    moto_server.apply()
    assert _retention_scenario() == expected
    assert not any("old" in bodies for bodies in expected) and ["fresh", "fresher"] in expected


def _item_scenario() -> list:
    """Items written through the API: a usage-record-like one, one just under DynamoDB's item
    limit and one just over it; what is stored, or the error."""
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        record = {"pk": {"S": "usage"}, "n": {"N": "1.5"}, "ok": {"BOOL": True}, "tags": {"SS": ["a", "b"]},
                  "m": {"M": {"k": {"L": [{"S": "x"}, {"N": "2"}]}}}, **{f"a{i}": {"S": "v" * i} for i in range(20)}}
        out = []
        for pk, filler in (("usage", 0), ("under", 404_000), ("over", 406_000)):
            item = {**record, "pk": {"S": pk}, "blob": {"S": "x" * filler}}
            try:
                ddb.put_item(TableName="t", Item=item)
                out.append(ddb.get_item(TableName="t", Key={"pk": {"S": pk}})["Item"] == item)
            except ddb.exceptions.ClientError as e:
                out.append(e.response["Error"])
        return out


def test_items_are_stored_and_refused_as_moto_does(unpatched):
    expected = _item_scenario()
    moto_server.apply()
    assert _item_scenario() == expected
    assert expected[:2] == [True, True] and "size" in expected[2]["Message"].lower()
