"""Property: whatever arrives at the invoke route, the answer is Lambda's.

Hypothesis draws function names, qualifiers, invocation/log types, extra headers and bodies,
signed (by user1, user2, admin, or an unknown key) or not, and sends them to the shared
running system. Every answer must be a valid 200/202/204 or a well-formed Lambda error
(4xx, x-amzn-ErrorType, JSON {"Type", "message", ...}); never a 5xx, never a traceback.
"""
import json
import time
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawhttp import ERROR_CODES, is_lambda_error_body, send, signed_headers


NAMES = ["RuntimeAlpha", "RuntimeBeta", "NoSuchFunction",
         "arn:aws:lambda:us-east-1:123456789012:function:RuntimeAlpha",
         "123456789012:function:RuntimeBeta", "RuntimeAlpha:$LATEST", "RuntimeBeta:1", "arn:aws:s3:::bucket",
         "../../etc/passwd", "RuntimeAlpha\x00", "Runtime\r\nAlpha", "\u00e9\u4e2d"]
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12)

# Any Content-Type (Lambda takes the payload as bytes); JSON nested beyond Python's recursion limit
# is pinned by test_bad_input.py::test_deeply_nested_json_is_refused_not_a_server_error.
CONTENT_TYPES = ["application/json", "application/octet-stream", "binary/octet-stream", "text/plain",
                 "application/x-amz-json-1.1"]


def mostly(draw, usual, odd, odds: int = 4):
    """`usual` most of the time, so draws get past validation and reach the function; else `odd`."""
    return draw(odd) if draw(st.integers(0, odds)) == 0 else draw(usual)


@st.composite
def requests(draw):
    name = mostly(draw, st.sampled_from(["RuntimeAlpha", "RuntimeBeta"]),
                  st.sampled_from(NAMES) | st.text(min_size=1, max_size=70), odds=2)
    qualifier = mostly(draw, st.sampled_from([None, None, "$LATEST"]),
                       st.sampled_from(["1", "prod", ""]) | st.text(max_size=20))
    path = f"/2015-03-31/functions/{quote(name, safe='')}/invocations"
    if qualifier is not None:
        path += "?Qualifier=" + quote(qualifier, safe="")
    headers = {"Content-Type": mostly(draw, st.sampled_from(CONTENT_TYPES), st.sampled_from(
        ["text/html", "image/png", "", "multipart/form-data; boundary=x"]) | HEADER_TEXT)}
    itype = mostly(draw, st.sampled_from([None, "RequestResponse", "Event", "DryRun"]),
                   st.sampled_from(["event", "", "RequestResponse "]) | HEADER_TEXT)
    if itype is not None:
        headers["X-Amz-Invocation-Type"] = itype
    ltype = mostly(draw, st.sampled_from([None, "None", "Tail"]), st.sampled_from(["tail", ""]) | HEADER_TEXT)
    if ltype is not None:
        headers["X-Amz-Log-Type"] = ltype
    for k, v in draw(st.dictionaries(st.sampled_from(["X-Amz-Client-Context", "X-Amz-Security-Token",
                                                      "X-Amz-Date", "X-Amz-Content-Sha256", "X-Forwarded-For",
                                                      "X-Custom", "Accept", "User-Agent"]),
                                     HEADER_TEXT, max_size=3)).items():
        headers[k] = v
    body = draw(st.one_of(
        st.builds(lambda p: json.dumps({"prompt": p}).encode(), st.text(max_size=50)),
        st.builds(lambda v: json.dumps(v).encode(), JSON_VALUES),
        st.binary(max_size=300),
        st.just(b""),
    ))
    signer = mostly(draw, st.sampled_from(["user1", "user2", "admin", "admin"]),
                    st.sampled_from(["unknown", None, "garbage"]))
    # other methods on this path: test_bad_input.py::test_other_methods_on_the_invoke_route_get_a_lambda_error
    return "POST", path, headers, body, signer


def _check(answer, path):
    assert b"Traceback" not in answer.body, (path, answer)
    assert answer.status < 500, (path, answer)
    if answer.status in (202, 204):
        assert answer.headers.get("x-amzn-requestid"), answer
        return
    if answer.status == 200:
        payload = json.loads(answer.body)              # the function's answer or its error, as JSON
        if answer.headers.get("x-amz-function-error"):
            assert {"errorType", "errorMessage"} <= set(payload), answer
        return
    code = answer.headers.get("x-amzn-errortype")
    assert code in ERROR_CODES and ERROR_CODES[code] == answer.status, (path, answer)
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    body = json.loads(answer.body)
    assert is_lambda_error_body(body), answer


SEEN: dict[int, int] = {}


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(req=requests())
def _fuzz(system, req):
    method, path, headers, body, signer = req
    if signer in ("user1", "user2", "admin"):
        headers = signed_headers(system.url, method, path, body, system.keys(signer), headers)
    elif signer == "unknown":
        headers = signed_headers(system.url, method, path, body, ("AKIAIOSFODNN7EXAMPLE", "s" * 40), headers)
    elif signer == "garbage":
        headers = {**headers, "Authorization": "AWS4-HMAC-SHA256 " + headers.get("X-Amz-Log-Type", "x")}
    answer = send(system.url, method, path, body, headers, timeout=60)
    SEEN[answer.status] = SEEN.get(answer.status, 0) + 1
    _check(answer, path)


def test_invoke_route_answers_only_in_lambda_shapes(system):
    SEEN.clear()
    log_before = len(system.log())
    started = time.monotonic()
    _fuzz(system)
    print(f"fuzz: {sum(SEEN.values())} requests in {time.monotonic() - started:.1f} s, statuses {sorted(SEEN.items())}")
    # the draws reach the function, auth, and validation or the registry (an unknown name is a 404 only
    # for a caller allowed to invoke it, and most odd names fail validation first, as on AWS)
    assert {200, 403} <= set(SEEN) and set(SEEN) & {400, 404}
    system.wait_quiet(timeout=30)           # accepted Event calls (and their retries) finished
    new_log = system.log()[log_before:]
    assert "Traceback" not in new_log, new_log[new_log.find("Traceback") - 500:][:3000]
