"""SigV4-signed GETs to the dispatcher's mk1 routes (status, usage, async results)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def signed_get(endpoint: str, path: str, creds: Credentials | None, region: str,
               query: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    url = endpoint.rstrip("/") + path + (f"?{urlencode(sorted((query or {}).items()))}" if query else "")
    req = AWSRequest(method="GET", url=url)
    if creds is not None:
        SigV4Auth(creds, "lambda", region).add_auth(req)
    prepared = urllib.request.Request(url, headers=dict(req.headers.items()), method="GET")
    try:
        with urllib.request.urlopen(prepared, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {"message": str(e)}
