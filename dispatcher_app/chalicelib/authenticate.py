"""Authenticate: who signed this request? AWS Signature Version 4, verified server-side.

The request is rebuilt from exactly what arrived (method, raw path, query, the
signed headers, raw body) and re-signed with the user's secret; the timestamp is
the request's own X-Amz-Date (add_auth would stamp the current time).
"""
from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .errors import (IncompleteSignature, InvalidSignature, MissingAuthenticationToken,
                     UnrecognizedClient)

log = logging.getLogger("mk1.authenticate")

MAX_SKEW_S = 15 * 60
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<akid>[A-Za-z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
    r"(?P<service>[a-z0-9-]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;_.-]+),\s*"
    r"Signature=(?P<sig>[0-9a-f]{64})$")


@dataclass(frozen=True)
class Identity:
    user: str
    access_key_id: str


class KeyStore:
    """Access key -> (user, secret), from Secrets Manager; refreshed in the background."""

    def __init__(self, load):
        self._load = load          # () -> {akid: {"user":..., "secret":...}}
        self._keys: dict[str, dict] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        keys = self._load()
        with self._lock:
            self._keys = keys

    def lookup(self, akid: str) -> dict | None:
        return self._keys.get(akid)

    def users(self) -> list[str]:
        return sorted({v["user"] for v in self._keys.values()})


def secrets_manager_loader(secrets_client, secret_id: str):
    def load() -> dict:
        return json.loads(secrets_client.get_secret_value(SecretId=secret_id)["SecretString"]).get("keys", {})
    return load


def canonical_query(params: dict[str, list[str]]) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, vs in params.items() for v in vs)
    return "&".join(f"{k}={v}" for k, v in pairs)


def verify(method: str, raw_path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes,
           keys: KeyStore, now: datetime | None = None) -> Identity:
    """`headers` with lower-case names. Raises an error of the tree, or returns who signed."""
    auth = headers.get("authorization")
    if not auth:
        raise MissingAuthenticationToken("Missing Authentication Token: sign the request with SigV4 "
                                         "(use a boto3 client or the aws CLI with a profile from .mk1/credentials).")
    m = _AUTH_RE.match(auth.strip())
    if m is None:
        raise IncompleteSignature("Authorization header is not a valid AWS4-HMAC-SHA256 signature.")
    entry = keys.lookup(m["akid"])
    if entry is None:
        raise UnrecognizedClient("The security token included in the request is invalid.")
    amz_date = headers.get("x-amz-date", "")
    try:
        stamp = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise IncompleteSignature("X-Amz-Date is missing or not in the form YYYYMMDDTHHMMSSZ.") from None
    now = now or datetime.now(timezone.utc)
    if abs((now - stamp).total_seconds()) > MAX_SKEW_S or amz_date[:8] != m["date"]:
        raise InvalidSignature(f"Signature expired: {amz_date} is outside the 15 minute window around "
                               f"{now.strftime('%Y%m%dT%H%M%SZ')}.")
    signed = m["signed"].split(";")
    if "host" not in signed:
        raise InvalidSignature("The host header must be signed.")
    missing = [h for h in signed if h not in headers]
    if missing:
        raise InvalidSignature(f"Signed header(s) missing from the request: {', '.join(missing)}.")
    host = headers["host"]
    qs = canonical_query(query)
    request = AWSRequest(method=method, url=f"http://{host}{raw_path}" + (f"?{qs}" if qs else ""),
                         data=body, headers={h: headers[h] for h in signed})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(m["akid"], entry["secret"]), m["service"], m["region"])
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, m["sig"]):
        raise InvalidSignature("The request signature we calculated does not match the signature you "
                               "provided. Check your AWS Secret Access Key and signing method.")
    return Identity(entry["user"], m["akid"])
