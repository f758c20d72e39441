import json

import pytest

from chalicelib.errors import InvalidRequestContent, RequestTooLarge, ValidationError
from chalicelib.record.usage import billed_ms, report_lines, usage_item, from_item
from chalicelib.record.queries import report
from chalicelib.edge.answers import error_response, safe_header
from chalicelib.request import HttpRequest, parse_invoke


def req(body=b'{"prompt":"x"}', **headers):
    return HttpRequest("POST", "/", {}, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def test_parse_invoke_checks_type_size_and_json():
    assert parse_invoke(req(), "F").invocation_type == "RequestResponse"
    with pytest.raises(ValidationError):
        parse_invoke(req(**{"x_amz_invocation_type": "Sometimes"}), "F")
    with pytest.raises(RequestTooLarge):
        parse_invoke(req(b"x" * (6 * 1024 * 1024 + 1)), "F")
    with pytest.raises(RequestTooLarge):
        parse_invoke(req(b'"' + b"x" * (1024 * 1024) + b'"', **{"x_amz_invocation_type": "Event"}), "F")
    with pytest.raises(InvalidRequestContent):
        parse_invoke(req(b"{not json"), "F")
    assert parse_invoke(req(b""), "F").payload == b"{}"


def test_error_response_shape():
    from chalicelib.errors import TooManyRequests
    r = error_response(TooManyRequests("busy", "ReservedFunctionConcurrentInvocationLimitExceeded", 2), "rid")
    body = json.loads(r.body)
    assert r.status == 429 and r.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    assert body == {"Type": "User", "message": "Rate Exceeded.", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                    "retryAfterSeconds": "2"}        # AWS's message; mk1's explanation in a header
    assert r.headers["X-Mk1-Detail"] == "busy" and r.headers["Retry-After"] == "2"


def test_header_values_cannot_inject():
    assert "\n" not in safe_header("a\r\nSet-Cookie: x")


def test_billing_rounds_up_and_includes_init():
    assert billed_ms(1000.2, None) == 1001
    assert billed_ms(1000.0, 250.5) == 1251
    start, end, rep = report_lines("r", 12.345, 13, 512, 40.2, 200.0)
    assert rep == "REPORT RequestId: r\tDuration: 12.35 ms\tBilled Duration: 13 ms\tMemory Size: 512 MB\t" \
                  "Max Memory Used: 40 MB\tInit Duration: 200.00 ms\t"   # AWS ends the line with a tab
    assert start.startswith("START RequestId: r") and end == "END RequestId: r"


def test_usage_item_round_trip():
    rec = {"request_id": "r", "user": "u", "function": "F", "start": "2026-01-01T00:00:00.000Z",
           "duration_ms": 1.5, "billed_ms": 2, "init_ms": None, "status": "success"}
    assert from_item(usage_item(rec)) == rec


def test_report_per_user_and_function():
    recs = [{"user": "u", "function": "F", "status": s, "duration_ms": d, "billed_ms": b, "memory_mb": 1024}
            for s, d, b in [("success", 100.0, 100), ("function_error", 300.0, 300), ("throttled", 0.0, 0)]]
    [row] = report(recs, price_gb_s=1.0, price_request=0.5)
    assert row["invocations"] == 2 and row["errors"] == 1 and row["throttled"] == 1
    assert row["gb_seconds"] == pytest.approx(0.4) and row["estimated_cost_usd"] == pytest.approx(1.4)
    assert row["p50_ms"] == pytest.approx(200.0)
