"""Usage records, the usage table, CloudWatch REPORT lines, /metrics and restart safety."""
import urllib.request

import pytest

from chalicelib.record.queries import query, report
from helpers import wait_until

pytestmark = pytest.mark.localstack   # runs on LocalStack too (make test-localstack)

FIELDS = {"request_id", "user", "function", "invocation_type", "accepted", "start", "end", "duration_ms", "billed_ms",
          "init_ms", "wait_ms", "memory_mb", "max_memory_used_mb", "status", "container_id", "backend"}


def test_one_record_per_call_in_log_and_table(make_system):
    sys_ = make_system()
    a = sys_.function("RuntimeAlpha", "user1")
    b = sys_.function("RuntimeBeta", "user2")
    calls = [a.invoke({"prompt": "one"}), a.invoke({"prompt": "two"}), b.invoke({"prompt": "x"}),
             b.invoke({"bad": 1})]
    recs = sys_.usage_records(expect=4)
    assert len(recs) == 4 and {r["request_id"] for r in recs} == {c.request_id for c in calls}
    assert all(FIELDS <= set(r) for r in recs)
    first_alpha = [r for r in recs if r["function"] == "RuntimeAlpha"]
    assert first_alpha[0]["init_ms"] > 150 and first_alpha[1]["init_ms"] is None   # init only when cold
    assert [r["status"] for r in recs if r["function"] == "RuntimeBeta"] == ["success", "function_error"]
    for r in recs:
        assert r["accepted"] <= r["start"] <= r["end"] and r["billed_ms"] >= r["duration_ms"]
        assert 5 < r["max_memory_used_mb"] < r["memory_mb"]   # read after the answer went out
        assert r["start"].endswith("Z")
    ddb = sys_.aws("dynamodb")
    table = {r["request_id"]: r for r in wait_until(lambda: query(ddb), lambda rows: len(rows) >= 4, interval=0.1,
                                                    what="4 rows in the usage table")}
    assert table == {r["request_id"]: r for r in recs}          # the table and the log agree
    assert [r["request_id"] for r in query(ddb, user="user1")] == [r["request_id"] for r in recs[:2]]
    assert len(query(ddb, function="RuntimeBeta")) == 2
    rows = {(r["user"], r["function"]): r for r in report(recs, 0.0000166667, 0.0000002)}
    assert rows[("user2", "RuntimeBeta")]["invocations"] == 2 and rows[("user2", "RuntimeBeta")]["errors"] == 1


def test_usage_routes_enforce_who_sees_what(system):
    ids = {system.function("RuntimeAlpha", "user1").invoke({"prompt": "mine"}).request_id,
           system.function("RuntimeBeta", "user2").invoke({"prompt": "theirs"}).request_id}
    from my_mk1_homework.signed import signed_get
    from botocore.credentials import Credentials
    def get(user, path, q=None):
        return signed_get(system.url, path, Credentials(*system.keys(user)), "us-east-1", q)
    wait_until(lambda: {r["request_id"] for r in get("admin", "/mk1/usage")[1]["records"]},
               lambda seen: ids <= seen, what="both calls in the usage table")
    st, body = get("user1", "/mk1/usage", {"user": "user2"})
    assert st == 200 and body["records"] and {r["user"] for r in body["records"]} == {"user1"}
    st, body = get("admin", "/mk1/usage")
    assert {"user1", "user2"} <= {r["user"] for r in body["records"]}
    st, body = get("admin", "/mk1/usage/report")
    assert st == 200 and {"user", "function", "gb_seconds", "estimated_cost_usd"} <= set(body["rows"][0])
    st, body = signed_get(system.url, "/mk1/usage", None, "us-east-1")
    assert st == 403


def test_report_lines_reach_cloudwatch(system):
    r = system.function("RuntimeAlpha", "admin").invoke({"prompt": "logged"})
    logs = system.aws("logs")
    found = wait_until(lambda: [e for e in logs.filter_log_events(logGroupName="/aws/lambda/RuntimeAlpha")["events"]
                                if e["message"].startswith(f"REPORT RequestId: {r.request_id}")],
                       interval=0.1, what="the call's REPORT line in CloudWatch Logs")
    assert "Billed Duration:" in found[0]["message"] and "Memory Size: 512 MB" in found[0]["message"]
    assert found[0]["logStreamName"] == f"[$LATEST]{r.container}"


def test_metrics_count_the_calls(make_system):
    sys_ = make_system()
    fn = sys_.function("RuntimeBeta", "admin")
    for _ in range(3):
        fn.generate("x")
    fn.invoke({"bad": 1})
    # A call is counted just after its answer goes out (bookkeeping the caller does not wait for):
    # the last one may still be counting when the caller asks.
    failed = 'mk1_invocations_total{function="RuntimeBeta",status="function_error",user="admin"} 1.0'
    text = wait_until(lambda: urllib.request.urlopen(sys_.url + "/metrics").read().decode(),
                      lambda t: failed in t, timeout=5, what="the failed call counted")
    assert 'mk1_invocations_total{function="RuntimeBeta",status="success",user="admin"} 3.0' in text
    assert 'mk1_cold_starts_total{function="RuntimeBeta"} 1.0' in text
    assert 'mk1_running{function="RuntimeBeta"} 0.0' in text


def test_restart_of_everything_keeps_usage(make_system):
    sys_ = make_system()
    fn = sys_.function("RuntimeAlpha", "admin")
    ids = {fn.invoke({"prompt": "before"}).request_id for _ in range(3)}
    sys_.usage_records(expect=3)
    sys_.stop()                       # moto's state is gone with it
    sys_.start_moto()
    sys_.provision()
    from chalicelib.record.usage import reseed_from_log
    assert reseed_from_log(sys_.aws("dynamodb"), sys_.home / "usage.log") == 3   # what `mk1 up` does
    sys_.start_dispatcher()
    assert {r["request_id"] for r in query(sys_.aws("dynamodb"))} == ids
    assert sys_.function("RuntimeAlpha", "admin").generate("after")


def test_a_burst_of_calls_loses_no_record(make_system):
    sys_ = make_system(MK1_ALPHA_GENERATE_SECONDS="0", MK1_BETA_GENERATE_SECONDS="0")
    a, b = sys_.function("RuntimeAlpha", "admin"), sys_.function("RuntimeBeta", "admin")
    out = a.map(["x"] * 150, max_parallel=12) + b.map(["y"] * 150, max_parallel=12)
    assert all(isinstance(x, str) for x in out)
    recs = sys_.usage_records(expect=300, timeout=30)
    assert len(recs) == 300 and len({r["request_id"] for r in recs}) == 300
    ddb = sys_.aws("dynamodb")
    rows = wait_until(lambda: query(ddb), lambda rows: len(rows) >= 300, timeout=20, interval=0.2,
                      what="300 rows in the usage table")
    assert len(rows) == 300
