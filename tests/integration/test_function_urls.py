"""Function URLs: a function's own HTTP endpoint, reached with curl and boto3's signer as on AWS.

AWS's pages this matches:
- URL form <url-id>.lambda-url.<region>.on.aws (here .localhost:<dispatcher port>), the payload
  format 2.0 event, the response rules (statusCode/headers/cookies/body/isBase64Encoded; other JSON
  becomes a 200 application/json body): https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html
- AuthType NONE needs a resource-based policy (add-permission --principal '*'
  --function-url-auth-type NONE), AWS_IAM a SigV4 signature and lambda:InvokeFunctionUrl:
  https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html
- CORS: https://docs.aws.amazon.com/lambda/latest/dg/urls-configuration.html#urls-cors
- CreateFunctionUrlConfig / ListFunctionUrlConfigs / ResourceConflictException:
  https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunctionUrlConfig.html
"""
import base64
import io
import json
import subprocess
import zipfile

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from helpers import wait_until

HANDLER = '''
import base64, json
def handler(event, context):
    path = event["rawPath"]
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/plain":
        return {"just": "json"}
    if path == "/string":
        return "hello"
    if path == "/custom":
        return {"statusCode": 201, "headers": {"X-Mine": "yes", "Content-Type": "text/plain"},
                "cookies": ["a=1; Path=/", "b=2"], "body": "made"}
    if path == "/binary":
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(b"\\x00\\x01\\x02").decode(), "isBase64Encoded": True}
    return {"statusCode": 200, "body": json.dumps({"event": event, "version": context.function_version})}
'''


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", HANDLER)
    return buf.getvalue()


def _deploy(system, name: str) -> None:
    role = system.aws("iam").get_role(RoleName="mk1-lambda-role")["Role"]["Arn"]
    system.aws("lambda").create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                                         Role=role, Code={"ZipFile": _zip()}, Timeout=10)


def _curl(url: str, *args: str) -> tuple[int, dict, bytes]:
    out = subprocess.run(["curl", "-s", "-i", "--max-time", "20", *args, url], capture_output=True, timeout=30)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return status, headers, body


def _public(system, name: str, qualifier: str | None = None) -> None:
    kw = {"Qualifier": qualifier} if qualifier else {}
    system.aws("lambda").add_permission(FunctionName=name, StatementId="FunctionURLAllowPublicAccess",
                                        Action="lambda:InvokeFunctionUrl", Principal="*",
                                        FunctionUrlAuthType="NONE", **kw)


def test_a_public_url_reached_with_curl_as_aws_answers_it(system):
    _deploy(system, "webby")
    lam = system.aws("lambda")
    made = lam.create_function_url_config(FunctionName="webby", AuthType="NONE")
    url = made["FunctionUrl"]
    assert url.startswith("http://") and ".lambda-url.us-east-1.localhost:" in url and url.endswith("/")
    assert "InvokeMode" not in made and made["AuthType"] == "NONE"   # answered once set, as AWS does
    assert lam.get_function_url_config(FunctionName="webby")["FunctionUrl"] == url
    assert [c["FunctionUrl"] for c in lam.list_function_url_configs(FunctionName="webby")["FunctionUrlConfigs"]] == [url]
    with pytest.raises(ClientError) as again:
        lam.create_function_url_config(FunctionName="webby", AuthType="NONE")
    assert again.value.response["Error"]["Code"] == "ResourceConflictException"

    # No resource-based policy lets anyone in yet: Forbidden, as on AWS.
    status, headers, body = _curl(url + "hello")
    assert status == 403 and json.loads(body)["Message"].startswith("Forbidden. For troubleshooting Function URL")
    assert headers["x-amzn-errortype"] == ["AccessDeniedException"]
    unknown = url.replace(url.split("//")[1].split(".")[0], "0" * 32)
    status, _, body = _curl(unknown)
    assert status == 403 and json.loads(body) == {"Message": None}
    _public(system, "webby")
    status, headers, body = wait_until(lambda: _curl(url + "hello/there?x=1&x=2&y=3", "-X", "POST",
                                                     "-H", "Content-Type: application/json",
                                                     "-H", "Cookie: c1=v1; c2=v2", "-d", '{"k": 1}'),
                                       lambda r: r[0] == 200, timeout=10, what="the URL open to anyone")
    event = json.loads(body)["event"]
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/hello/there" and event["rawQueryString"] == "x=1&x=2&y=3"
    assert event["queryStringParameters"] == {"x": "1,2", "y": "3"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"]["method"] == "POST" and ctx["http"]["path"] == "/hello/there"
    assert ctx["domainPrefix"] == url.split("//")[1].split(".")[0] and ctx["stage"] == "$default"
    assert "authorizer" not in ctx
    assert headers["content-type"] == ["application/json"] and headers["x-amzn-requestid"]

    # The response rules.
    status, headers, body = _curl(url + "custom")
    assert status == 201 and body == b"made" and headers["x-mine"] == ["yes"]
    assert headers["set-cookie"] == ["a=1; Path=/", "b=2"]
    status, headers, body = _curl(url + "plain")
    assert status == 200 and json.loads(body) == {"just": "json"} and headers["content-type"] == ["application/json"]
    status, _, body = _curl(url + "string")
    assert status == 200 and body == b"hello"
    status, _, body = _curl(url + "binary")
    assert status == 200 and body == b"\x00\x01\x02"
    status, _, body = _curl(url + "boom")
    assert status == 502 and body == b"Internal Server Error"
    status, _, body = _curl(url + "form", "-d", "a=1&b=2")   # not a text type: base64, as AWS sends it
    event = json.loads(body)["event"]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"a=1&b=2"

    # Reserved concurrency and usage records apply as for Invoke.
    records = wait_until(lambda: [r for r in system.usage_records() if r["function"] == "webby"],
                         lambda rs: len(rs) >= 5, timeout=15, what="the URL calls' usage records")
    assert {r["user"] for r in records} == {"anonymous"}
    lam.put_function_concurrency(FunctionName="webby", ReservedConcurrentExecutions=0)
    status, _, body = wait_until(lambda: _curl(url + "plain"), lambda r: r[0] == 429, timeout=10,
                                 what="reserved concurrency 0 refusing the URL")
    lam.delete_function_concurrency(FunctionName="webby")


def test_an_aws_iam_url_takes_sigv4_and_iam_decides(system):
    _deploy(system, "private")
    url = system.aws("lambda").create_function_url_config(FunctionName="private", AuthType="AWS_IAM")["FunctionUrl"]
    status, _, body = _curl(url)
    assert status == 403 and json.loads(body)["Message"].startswith("Forbidden.")

    def signed(user: str) -> tuple[int, dict, bytes]:
        akid, secret = system.keys(user)
        req = AWSRequest(method="GET", url=url + "who", headers={"Host": url.split("//")[1].rstrip("/")})
        SigV4Auth(Credentials(akid, secret), "lambda", "us-east-1").add_auth(req)
        args = [a for k, v in req.headers.items() for a in ("-H", f"{k}: {v}")]
        return _curl(url + "who", *args)
    status, _, body = signed("admin")
    assert status == 200
    ctx = json.loads(body)["event"]["requestContext"]
    assert ctx["authorizer"]["iam"]["userArn"].endswith(":user/admin")
    assert signed("user1")[0] == 403          # user1 may invoke RuntimeAlpha only


def test_cors_preflight_and_headers_as_configured(system):
    _deploy(system, "corsy")
    lam = system.aws("lambda")
    url = lam.create_function_url_config(FunctionName="corsy", AuthType="NONE", Cors={
        "AllowOrigins": ["https://example.com"], "AllowMethods": ["GET", "POST"], "AllowHeaders": ["x-custom"],
        "ExposeHeaders": ["x-mine"], "MaxAge": 300})["FunctionUrl"]
    _public(system, "corsy")
    status, headers, body = wait_until(
        lambda: _curl(url, "-X", "OPTIONS", "-H", "Origin: https://example.com",
                      "-H", "Access-Control-Request-Method: POST", "-H", "Access-Control-Request-Headers: x-custom"),
        lambda r: r[0] == 200 and "access-control-allow-origin" in r[1], timeout=10, what="a preflight answer")
    assert headers["access-control-allow-origin"] == ["https://example.com"]
    assert headers["access-control-allow-methods"] == ["GET,POST"]
    assert headers["access-control-max-age"] == ["300"] and body == b""
    status, headers, _ = _curl(url + "custom", "-H", "Origin: https://example.com")
    assert status == 201 and headers["access-control-allow-origin"] == ["https://example.com"]
    assert headers["access-control-expose-headers"] == ["x-mine"]
    status, headers, _ = _curl(url + "custom", "-H", "Origin: https://evil.example")
    assert status == 201 and "access-control-allow-origin" not in headers


def test_a_url_on_an_alias_runs_the_aliased_version(system):
    _deploy(system, "aliased")
    lam = system.aws("lambda")
    version = lam.publish_version(FunctionName="aliased")["Version"]
    lam.create_alias(FunctionName="aliased", Name="live", FunctionVersion=version)
    made = lam.create_function_url_config(FunctionName="aliased", Qualifier="live", AuthType="NONE")
    assert made["FunctionArn"].endswith(":aliased:live")
    _public(system, "aliased", "live")
    status, _, body = wait_until(lambda: _curl(made["FunctionUrl"]), lambda r: r[0] == 200, timeout=10,
                                 what="the alias's URL")
    assert json.loads(body)["version"] == version
