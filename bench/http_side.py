"""Figure 9: Lambda's HTTP side. A streamed answer's time to first byte beside a buffered answer's
time, and a function URL's warm overhead beside Invoke's, all in one run.

- Streaming: a custom-runtime function writes 10 chunks 100 ms apart (tests/helpers.py's streaming
  bootstrap). InvokeWithResponseStream through boto3: time to the first PayloadChunk, and to the
  end; Invoke (buffered) of the same function: time to its whole answer.
- Function URL: a no-op python function, warm. Its URL (AuthType NONE) called with http.client on
  one keep-alive connection, beside Invoke of the same function as raw signed HTTP (SigV4 computed
  per call, the same http.client) and through boto3. Overhead = latency - the handler's own time (~0).
"""
from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from . import harness as h
from .stats import ratio, summary

NOOP = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"


def _noop(s, name: str) -> None:
    h.deploy_code(s, name, NOOP, Timeout=10)


def _streaming(s, calls: int) -> dict:
    from helpers import deploy_streamer
    deploy_streamer(s, "bench-stream")
    client = h.boto3_lambda(s)
    client.invoke(FunctionName="bench-stream", Payload=b'{"chunks": 1}')   # warm
    first, last, buffered = [], [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        r = client.invoke_with_response_stream(FunctionName="bench-stream", Payload=b'{"chunks": 10}')
        seen = None
        for event in r["EventStream"]:
            if "PayloadChunk" in event and seen is None:
                seen = (time.perf_counter() - t0) * 1000
        first.append(seen)
        last.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        client.invoke(FunctionName="bench-stream", Payload=b'{"chunks": 10}')["Payload"].read()
        buffered.append((time.perf_counter() - t0) * 1000)
    out = {"calls": calls, "chunks": 10, "chunk_gap_ms": 100,
           "stream_first_byte_ms": summary(first), "stream_last_byte_ms": summary(last),
           "buffered_answer_ms": summary(buffered)}
    out["ratios"] = {"first byte / buffered": ratio(out["stream_first_byte_ms"]["median"],
                                                    out["buffered_answer_ms"]["median"])}
    return out


def _url_vs_invoke(s, calls: int) -> dict:
    _noop(s, "bench-url")
    lam = s.aws("lambda")
    url = lam.create_function_url_config(FunctionName="bench-url", AuthType="NONE")["FunctionUrl"]
    lam.add_permission(FunctionName="bench-url", StatementId="public", Action="lambda:InvokeFunctionUrl",
                       Principal="*", FunctionUrlAuthType="NONE")
    parts = urlsplit(url)
    conn_url = http.client.HTTPConnection("127.0.0.1", parts.port)
    akid, secret = s.keys(h.USER)
    creds = Credentials(akid, secret)
    api = urlsplit(s.url)
    conn_api = http.client.HTTPConnection(api.hostname, api.port)
    client = h.boto3_lambda(s)
    invoke_path = "/2015-03-31/functions/bench-url/invocations"

    def via_url() -> float:
        t0 = time.perf_counter()
        conn_url.request("GET", "/", headers={"Host": parts.netloc})
        r = conn_url.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"function URL answered {r.status}")
        return (time.perf_counter() - t0) * 1000

    def via_signed() -> float:
        t0 = time.perf_counter()
        req = AWSRequest(method="POST", url=s.url + invoke_path, data=b"{}")
        SigV4Auth(creds, "lambda", "us-east-1").add_auth(req)
        conn_api.request("POST", invoke_path, body=b"{}", headers=dict(req.headers.items()))
        r = conn_api.getresponse()
        r.read()
        return (time.perf_counter() - t0) * 1000

    def via_boto3() -> float:
        t0 = time.perf_counter()
        client.invoke(FunctionName="bench-url", Payload=b"{}")["Payload"].read()
        return (time.perf_counter() - t0) * 1000

    for _ in range(200):   # the permission reaches the dispatcher within a control-plane read
        try:
            via_url()
            break
        except RuntimeError:
            time.sleep(0.1)
    rows: dict[str, list[float]] = {"url": [], "invoke_signed_http": [], "invoke_boto3": []}
    for _ in range(20):
        via_url(), via_signed(), via_boto3()   # warm: containers, connections
    for _ in range(calls):   # interleaved, so the machine's noise falls on all three alike
        rows["url"].append(via_url())
        rows["invoke_signed_http"].append(via_signed())
        rows["invoke_boto3"].append(via_boto3())
    out = {"calls": calls, **{f"{k}_ms": summary(v) for k, v in rows.items()}}
    out["ratios"] = {"url / invoke (signed http)": ratio(out["url_ms"]["median"],
                                                         out["invoke_signed_http_ms"]["median"])}
    return out


def http_side(s, calls: int, log=print) -> dict:
    out = {"streaming": _streaming(s, max(3, calls // 50)), "function_url": _url_vs_invoke(s, calls)}
    st, fu = out["streaming"], out["function_url"]
    log(f"  streamed answer: first byte {st['stream_first_byte_ms']['median']:.1f} ms, buffered answer "
        f"{st['buffered_answer_ms']['median']:.1f} ms")
    log(f"  function URL warm {fu['url_ms']['median']:.2f} ms, Invoke as signed HTTP "
        f"{fu['invoke_signed_http_ms']['median']:.2f} ms, through boto3 {fu['invoke_boto3_ms']['median']:.2f} ms")
    return out
