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
import json
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from helpers import deploy_streamer, wait_until

def test_invoke_with_response_stream_delivers_chunks_as_they_are_written(system):
    deploy_streamer(system, "streamer")
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
    deploy_streamer(system, "streamurl")
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
