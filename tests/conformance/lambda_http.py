"""Helpers of the conformance tests: a user's function, raw signed requests, the aws CLI.

Conformance: the running system (moto, dispatcher, containers) answers Invoke as AWS does.

Every case names the AWS page (or botocore model constraint, or AWS-recorded snapshot) whose shape
it checks. Clients: the real boto3 `lambda` client, the real aws CLI (v1, from the venv), and raw
signed HTTP where the exact bytes of a body matter (botocore reshapes error bodies).
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

CODE = '''
import json, os, sys, time
def handler(event, context):
    what = event.get("do")
    if what == "big":
        return "a" * (7 * 1024 * 1024)
    if what == "exit":
        sys.exit(event.get("code", 0))
    if what == "raise":
        raise ValueError("it failed")
    if what == "sleep":
        time.sleep(event["s"])
    cc = context.client_context
    return {"custom": getattr(cc, "custom", None) if cc else None, "wrapped": os.environ.get("WRAPPED"),
            "version": context.function_version}
'''
WRAPPER = '#!/bin/sh\nexport WRAPPED=yes\nexec "$@"\n'


def function_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", CODE)
        info = zipfile.ZipInfo("wrapper.sh")
        info.external_attr = 0o755 << 16
        z.writestr(info, WRAPPER)
    return buf.getvalue()


class Raw:
    """A signed request and its exact answer (status, headers, body bytes)."""

    def __init__(self, system, user: str = "admin"):
        self.url, self.keys = system.url, system.keys(user)

    def invoke(self, function: str, body: bytes = b"{}", qualifier: str | None = None,
               headers: dict | None = None) -> tuple[int, dict, bytes]:
        path = f"/2015-03-31/functions/{quote(function, safe='')}/invocations"
        if qualifier is not None:
            path += f"?Qualifier={quote(qualifier, safe='')}"
        req = AWSRequest(method="POST", url=self.url + path, data=body, headers=dict(headers or {}))
        SigV4Auth(Credentials(*self.keys), "lambda", "us-east-1").add_auth(req)
        host = urlsplit(self.url)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
        try:
            conn.request("POST", path, body=body, headers=dict(req.headers.items()))
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


def aws_cli(system, *args: str, user: str = "admin") -> subprocess.CompletedProcess:
    """The real aws CLI against the dispatcher, with the user's profile."""
    bin_dir = Path(sys.executable).parent
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(system.home / "credentials"), "AWS_DEFAULT_REGION": "us-east-1",
           "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(system.home)}
    return subprocess.run([str(bin_dir / "aws"), "--profile", user, "--endpoint-url", system.url, *args],
                          env=env, capture_output=True, text=True, timeout=120, cwd=system.home)


def b64json(obj) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()
