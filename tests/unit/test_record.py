"""The recorder counts a promised record (a call answered, its record on the way) and drain() waits
for it, so a record booked after its answer (server.py) is never left behind at shutdown."""
import json
import threading
import time

import boto3
from botocore.stub import ANY, Stubber

from chalicelib.clock import FakeClock
from chalicelib.record.recorder import Recorder
from test_request_shapes import RECORD


def _client(service: str):
    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y",
                          endpoint_url="http://127.0.0.1:9")
    stub = Stubber(client)
    stub.activate()
    return client, stub


def test_a_promised_record_is_in_the_backlog_and_drain_waits_for_it(tmp_path):
    ddb, ddb_stub = _client("dynamodb")
    logs, _ = _client("logs")
    ddb_stub.add_response("batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": ANY})
    rec = Recorder(ddb, logs, tmp_path / "usage.log", FakeClock(), batch_s=0.0)
    try:
        rec.promise()
        assert rec.backlog() == 1
        threading.Timer(0.3, lambda: rec.usage(dict(RECORD), promised=True)).start()
        t0 = time.monotonic()
        assert rec.drain(10)
        assert time.monotonic() - t0 >= 0.25      # it waited for the promised record
        lines = (tmp_path / "usage.log").read_text().splitlines()
        assert [json.loads(line)["request_id"] for line in lines] == [RECORD["request_id"]]
        assert rec.backlog() == 0 and rec.written == 1
    finally:
        rec.drain(1)
    ddb_stub.assert_no_pending_responses()
