"""Authenticate: who signed this request? AWS Signature Version 4, verified server-side.

The canonical request is rebuilt from exactly what arrived (method, raw path, query,
the headers the client says it signed, raw body) and signed again with the user's
secret under the request's own X-Amz-Date, as botocore's signer would (its path
normalisation and double encoding, its header trimming). This is on every call's
path, so it is done directly with hashlib/hmac, and each signing key (four HMACs from
secret, date, region and service) is derived once a day, not per request: ~24 us
instead of botocore's AWSRequest + SigV4Auth at ~90 us.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from urllib.parse import quote

from botocore.utils import normalize_url_path

from chalicelib.errors import (IncompleteSignature, InvalidSignature, MissingAuthenticationToken,
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


UNKNOWN_KEY_RECHECK_S = 1.0   # a key id found unknown is not read for again sooner than this
MAX_UNKNOWN_KEYS = 10_000


class KeyStore:
    """Access key -> (user, secret), from Secrets Manager; refreshed in the background.

    A key id not known here may have been made a moment ago (re-provisioning), so the call path may
    ask for one read (`refresh_for`). Made-up key ids must not each cost a read of every key and
    policy (~18 ms): a key id found unknown is remembered as such, and reads for unknown keys are
    made at most once per UNKNOWN_KEY_RECHECK_S, whatever the number of made-up ids."""

    def __init__(self, load, clock=None):
        self._load = load          # () -> {akid: {"user":..., "secret":...}}
        self._keys: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._clock = clock or time.monotonic
        self._unknown: dict[str, float] = {}    # key id -> when a read last found it unknown
        self._last_read_for_unknown = float("-inf")

    def refresh(self) -> None:
        keys = self._load()
        with self._lock:
            self._keys = keys

    def refresh_for(self, akid: str) -> bool:
        """Read the keys again for an unknown key id, unless that is not worth it yet. True if read."""
        now = self._clock()
        with self._lock:
            if now - self._unknown.get(akid, float("-inf")) < UNKNOWN_KEY_RECHECK_S or \
                    now - self._last_read_for_unknown < UNKNOWN_KEY_RECHECK_S:
                return False
            self._last_read_for_unknown = now
        self.refresh()
        with self._lock:
            if akid not in self._keys:
                if len(self._unknown) >= MAX_UNKNOWN_KEYS:   # ids come from requests: bounded
                    self._unknown.clear()
                self._unknown[akid] = now
        return True

    def lookup(self, akid: str) -> dict | None:
        return self._keys.get(akid)

    def users(self) -> list[str]:
        return sorted({v["user"] for v in self._keys.values()})


def access_key_id(authorization: str) -> str:
    """The key id a SigV4 Authorization header names ('' if none)."""
    m = _AUTH_RE.match(authorization.strip())
    return m.group("akid") if m else ""


def secrets_manager_loader(secrets_client, secret_id: str):
    def load() -> dict:
        return json.loads(secrets_client.get_secret_value(SecretId=secret_id)["SecretString"]).get("keys", {})
    return load


def canonical_query(params: dict[str, list[str]]) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, vs in params.items() for v in vs)
    return "&".join(f"{k}={v}" for k, v in pairs)


def verify(method: str, raw_path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes,
           keys: KeyStore, now: datetime | None = None, *, canonical_path: str | None = None,
           streaming_payloads: bool = False) -> Identity:
    """`headers` with lower-case names. Raises an error of the tree, or returns who signed.

    `canonical_path`: the path as signed, where the service does not normalise it (S3 signs the path
    as sent). `streaming_payloads`: accept an aws-chunked upload's STREAMING-* payload hash (its chunk
    signatures are not checked here; the embedded AWS's S3 uploads only)."""
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
    stamp = _amz_date(amz_date)
    now = now or datetime.now(timezone.utc)
    if abs(now.timestamp() - stamp) > MAX_SKEW_S or amz_date[:8] != m["date"]:
        raise InvalidSignature(f"Signature expired: {amz_date} is outside the 15 minute window around "
                               f"{now.strftime('%Y%m%dT%H%M%SZ')}.")
    signed = m["signed"].split(";")
    if "host" not in signed:
        raise InvalidSignature("The host header must be signed.")
    missing = [h for h in signed if h not in headers]
    if missing:
        raise InvalidSignature(f"Signed header(s) missing from the request: {', '.join(missing)}.")
    canonical = "\n".join((
        method.upper(),
        _canonical_path(raw_path) if canonical_path is None else canonical_path,
        canonical_query(query),
        "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed),
        m["signed"],
        _payload_hash(headers, body, streaming_payloads)))
    string_to_sign = "\n".join(("AWS4-HMAC-SHA256", amz_date, f"{m['date']}/{m['region']}/{m['service']}/aws4_request",
                                hashlib.sha256(canonical.encode()).hexdigest()))
    key = _signing_key(entry["secret"], m["date"], m["region"], m["service"])
    expected = hmac.digest(key, string_to_sign.encode(), "sha256").hex()
    if not hmac.compare_digest(expected, m["sig"]):
        raise InvalidSignature("The request signature we calculated does not match the signature you "
                               "provided. Check your AWS Secret Access Key and signing method.")
    return Identity(entry["user"], m["akid"])


UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_AMZ_DATE_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$")


@lru_cache(maxsize=64)   # a client sends the same X-Amz-Date for a whole second
def _amz_date(value: str) -> float:
    """X-Amz-Date (YYYYMMDDTHHMMSSZ) as epoch seconds; strptime costs ~10 us a call."""
    m = _AMZ_DATE_RE.match(value)
    try:
        if m is None:
            raise ValueError(value)
        return datetime(*map(int, m.groups()), tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise IncompleteSignature("X-Amz-Date is missing or not in the form YYYYMMDDTHHMMSSZ.") from None


@lru_cache(maxsize=256)   # one per function name (and form of it) called
def _canonical_path(raw_path: str) -> str:
    """The canonical request's path, as botocore's signer makes it (normalised, then encoded)."""
    return quote(normalize_url_path(raw_path), safe="/~")


def _payload_hash(headers: dict[str, str], body: bytes, streaming: bool = False) -> str:
    """The body's SHA-256, as the canonical request carries it. A client may send it as
    X-Amz-Content-SHA256; then it must be the body's (botocore's signer would take it on trust)."""
    actual = hashlib.sha256(body).hexdigest()
    claimed = headers.get("x-amz-content-sha256")
    if claimed is None:
        return actual
    if claimed == UNSIGNED_PAYLOAD or (streaming and claimed.startswith("STREAMING-")):
        return claimed
    if not hmac.compare_digest(claimed.lower(), actual):
        raise InvalidSignature("The provided 'x-amz-content-sha256' header does not match what was computed.")
    return claimed


@lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key
