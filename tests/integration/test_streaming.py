"""Response streaming: InvokeWithResponseStream and RESPONSE_STREAM function URLs.

AWS's pages this matches:
- https://docs.aws.amazon.com/lambda/latest/api/API_InvokeWithResponseStream.html (PayloadChunk, then
  InvokeComplete with ErrorCode / ErrorDetails / LogResult; InvocationType RequestResponse or DryRun)
- https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html (the Runtime API's
  streaming mode: Lambda-Runtime-Function-Response-Mode: streaming, a chunked body, errors in the
  trailers; a function URL's application/vnd.awslambda.http-integration-response prelude + 8 NULs)
- https://docs.aws.amazon.com/lambda/latest/dg/runtimes-custom.html (a custom runtime's bootstrap)
"""
import base64
import io
import json
import subprocess
import time
import zipfile

import pytest
from botocore.exceptions import ClientError

from helpers import wait_until

# A custom runtime that streams: ten chunks 100 ms apart (a function URL's answer with its prelude).
BOOTSTRAP = r'''#!/usr/bin/env python3
import base64, http.client, json, os, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    event = json.loads(r.read() or b"{}")
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    url = "rawPath" in event
    conn.putrequest("POST", f"/2018-06-01/runtime/invocation/{rid}/response")
    conn.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Trailer", "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body")
    conn.putheader("Content-Type", "application/vnd.awslambda.http-integration-response" if url else "text/plain")
    conn.endheaders()
    def send(data):
        conn.send(b"%x\r\n%s\r\n" % (len(data), data))
    if url:
        send(json.dumps({"statusCode": 207, "headers": {"Content-Type": "text/plain", "X-Streamed": "yes"},
                         "cookies": ["s=1"]}).encode() + b"\0" * 8)
    for i in range(int(event.get("chunks", 10))):
        send(f"chunk {i} {time.time():.3f}\n".encode())
        time.sleep(0.1)
    if event.get("fail"):
        body = base64.b64encode(json.dumps({"errorType": "Oops", "errorMessage": "half way"}).encode())
        conn.send(b"0\r\nLambda-Runtime-Function-Error-Type: Oops\r\nLambda-Runtime-Function-Error-Body: " + body + b"\r\n\r\n")
    else:
        conn.send(b"0\r\n\r\n")
    conn.getresponse().read()
'''


def _deploy_streamer(system, name: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, BOOTSTRAP)
    role = system.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]
    system.aws("lambda").create_function(FunctionName=name, Runtime="provided.al2023", Handler="none",
                                         Role=role, Code={"ZipFile": buf.getvalue()}, Timeout=30)


def test_invoke_with_response_stream_delivers_chunks_as_they_are_written(system):
    _deploy_streamer(system, "streamer")
    client = system.lambda_client("admin")
    t0 = time.monotonic()
    r = client.invoke_with_response_stream(FunctionName="streamer", Payload=b'{"chunks": 10}', LogType="Tail")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200 and r["ExecutedVersion"] == "$LATEST"
    arrivals, chunks, complete = [], [], None
    for event in r["EventStream"]:
        if "PayloadChunk" in event:
            arrivals.append(time.monotonic() - t0)
            chunks.append(event["PayloadChunk"]["Payload"])
        elif "InvokeComplete" in event:
            complete = event["InvokeComplete"]
    text = b"".join(chunks).decode()
    assert [line.split()[1] for line in text.splitlines()] == [str(i) for i in range(10)]
    assert arrivals[-1] - arrivals[0] > 0.7, arrivals          # the first came long before the last
    assert complete is not None and "ErrorCode" not in complete
    assert "REPORT RequestId" in base64.b64decode(complete["LogResult"]).decode()

    # A streaming function called with Invoke: its whole answer, buffered.
    body = client.invoke(FunctionName="streamer", Payload=b'{"chunks": 3}')["Payload"].read().decode()
    assert len(body.splitlines()) == 3

    # An error in the trailers ends the stream with InvokeComplete's ErrorCode.
    r = client.invoke_with_response_stream(FunctionName="streamer", Payload=b'{"chunks": 2, "fail": true}')
    events = list(r["EventStream"])
    done = [e["InvokeComplete"] for e in events if "InvokeComplete" in e][0]
    assert done["ErrorCode"] == "Unhandled" and "half way" in done["ErrorDetails"]
    assert sum("PayloadChunk" in e for e in events) == 2


def test_a_buffered_function_streams_as_one_chunk_and_refusals_keep_invokes_answers(system):
    client = system.lambda_client("admin")
    r = client.invoke_with_response_stream(FunctionName="RuntimeAlpha", Payload=b'{"prompt": "hi"}')
    events = list(r["EventStream"])
    chunks = [e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e]
    assert len(chunks) == 1 and json.loads(chunks[0])["runtime"] == "RuntimeAlpha"
    assert "InvokeComplete" in events[-1]
    with pytest.raises(ClientError) as denied:
        system.lambda_client("user1").invoke_with_response_stream(FunctionName="RuntimeBeta", Payload=b"{}")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as missing:
        client.invoke_with_response_stream(FunctionName="no-such-function", Payload=b"{}")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    dry = client.invoke_with_response_stream(FunctionName="RuntimeAlpha", InvocationType="DryRun", Payload=b"{}")
    assert dry["StatusCode"] == 204


def test_a_response_stream_url_reaches_curl_chunk_by_chunk(system):
    _deploy_streamer(system, "streamurl")
    lam = system.aws("lambda")
    url = lam.create_function_url_config(FunctionName="streamurl", AuthType="NONE",
                                         InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    lam.add_permission(FunctionName="streamurl", StatementId="public", Action="lambda:InvokeFunctionUrl",
                       Principal="*", FunctionUrlAuthType="NONE")
    wait_until(lambda: subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url],
                                      capture_output=True, text=True, timeout=30).stdout,
               lambda code: code == "207", timeout=15, what="the streaming URL open")
    proc = subprocess.Popen(["curl", "-s", "-N", "-i", url], stdout=subprocess.PIPE)
    t0, lines = time.monotonic(), []
    for raw in proc.stdout:
        lines.append((time.monotonic() - t0, raw.decode().rstrip("\r\n")))
    proc.wait(10)
    head = [text for _, text in lines[:12]]
    assert head[0].startswith("HTTP/1.1 207") and "X-Streamed: yes" in head and "Set-Cookie: s=1" in head
    body = [(t, text) for t, text in lines if text.startswith("chunk ")]
    assert len(body) == 10 and body[-1][0] - body[0][0] > 0.7, body   # curl saw each as it came
