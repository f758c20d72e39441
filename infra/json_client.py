"""A lean client for the AWS JSON protocols (SQS, DynamoDB, CloudWatch Logs), for mk1's own writers.

botocore spends ~1.7 ms of CPU on each request the dispatcher's background writers make
(SendMessageBatch, ReceiveMessage, BatchWriteItem, PutLogEvents, a cluster lease's conditional
put), under the dispatcher's GIL and on the two cores the functions run on. Those requests carry
plain-JSON parameters of fixed shapes built by mk1's own code, and their answers are plain JSON:
none of botocore's model-driven serialization, parsing, event hooks or retry handlers is needed
to make them. Encoded with `json`, signed here (SigV4) and sent over a kept http.client
connection, the same request costs a fraction of that (see `make bench`, CPU per call).

`JsonClient` stands in for the boto3 client it is made from, for such callers: the same method
names and keyword arguments; the answer is the service's JSON document (what botocore returns for
shapes without blobs or timestamps, plus ResponseMetadata); an error raises the boto3 client's own
modeled exception (`client.exceptions.ConditionalCheckFailedException`, a botocore ClientError with
the same `response["Error"]["Code"]`). Endpoint, region, timeouts and the retry count come from the boto3
client; credentials from its session (refreshable ones are read per request).

Not for parameters with bytes or datetimes (botocore would base64 or format them): pass the boto3
client for those.
"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import random
import threading
import time
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

# Answers worth a retry, as botocore's standard mode has them: the endpoint is restarting or busy.
RETRY_STATUS = frozenset({500, 502, 503, 504})
THROTTLING = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
                        "TooManyRequestsException", "ProvisionedThroughputExceededException",
                        "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
                        "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
                        "EC2ThrottledException"})
MAX_BACKOFF_S = 1.0


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _transport_error(url: str, e: Exception) -> BotoCoreError:
    """botocore's error for the same failure: callers tell "the endpoint is down" (a BotoCoreError)
    from the service's answer (a ClientError) as they do with a boto3 client."""
    if isinstance(e, TimeoutError):
        return ReadTimeoutError(endpoint_url=url, error=e)
    if isinstance(e, (ConnectionResetError, BrokenPipeError, http.client.HTTPException)):
        return ConnectionClosedError(endpoint_url=url, error=e)   # it answered, then went away
    return EndpointConnectionError(endpoint_url=url, error=e)      # refused, unreachable, no such host


class Signer:
    """AWS Signature Version 4 for a POST of a JSON document to one service in one region."""

    def __init__(self, service: str, region: str):
        self.service, self.region = service, region
        self._keys: dict[tuple[str, str], bytes] = {}   # (secret, yyyymmdd) -> signing key

    def _key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            k = hmac.digest(("AWS4" + secret).encode(), day.encode(), "sha256")
            for part in (self.region, self.service, "aws4_request"):
                k = hmac.digest(k, part.encode(), "sha256")
            self._keys = {(secret, day): k}   # one day's key at a time
            key = k
        return key

    def headers(self, path: str, headers: dict[str, str], body: bytes, access_key: str, secret: str,
                token: str | None, amz_date: str) -> dict[str, str]:
        """`headers` (with Host) plus X-Amz-Date, the token if any, and Authorization, all signed."""
        out = dict(headers)
        out["X-Amz-Date"] = amz_date
        if token:
            out["X-Amz-Security-Token"] = token
        signed = sorted((k.lower(), " ".join(v.split())) for k, v in out.items())
        names = ";".join(k for k, _ in signed)
        canonical = "\n".join(["POST", path, "", *(f"{k}:{v}" for k, v in signed), "", names, _sha256(body)])
        scope = f"{amz_date[:8]}/{self.region}/{self.service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{_sha256(canonical.encode())}"
        signature = hmac.new(self._key(secret, amz_date[:8]), to_sign.encode(), hashlib.sha256).hexdigest()
        out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                f"SignedHeaders={names}, Signature={signature}")
        return out


class JsonClient:
    def __init__(self, boto_client, credentials, *, clock=time.time, sleep=time.sleep):
        meta = boto_client.meta
        model = meta.service_model
        if model.protocol != "json":
            raise ValueError(f"{model.service_name} speaks {model.protocol}, not JSON: use the boto3 client")
        self.meta = meta
        self.exceptions = boto_client.exceptions
        self._ops: dict[str, str] = dict(meta.method_to_api_mapping)
        self._target = model.metadata["targetPrefix"]
        self._content_type = f"application/x-amz-json-{model.metadata.get('jsonVersion', '1.0')}"
        url = urlsplit(meta.endpoint_url)
        self._https = url.scheme == "https"
        self._host, self._netloc = url.hostname or "", url.netloc
        self._port = url.port
        self._path = url.path or "/"
        self._url = f"{url.scheme}://{url.netloc}{self._path}"   # as botocore names it in its errors
        self._signer = Signer(model.signing_name, meta.region_name)
        self._credentials = credentials
        config = meta.config
        self._connect_timeout, self._read_timeout = config.connect_timeout, config.read_timeout
        retries = config.retries or {}
        self._attempts = retries.get("total_max_attempts") or (retries.get("max_attempts", 2) + 1)
        self._clock, self._sleep = clock, sleep
        self._local = threading.local()   # one kept connection per thread: the writers are threads

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        try:
            operation = self._ops[method]
        except KeyError:
            raise AttributeError(f"{self.meta.service_model.service_name} has no operation {method!r}") from None

        def call(**params):
            return self.call(operation, params)
        call.__name__ = method
        self.__dict__[method] = call   # made once per method
        return call

    def call(self, operation: str, params: dict) -> dict:
        body = json.dumps(params, separators=(",", ":")).encode()
        for attempt in range(1, self._attempts + 1):
            try:
                status, headers, data = self._send(operation, body)
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                if attempt == self._attempts:
                    raise _transport_error(self._url, e) from e
                if attempt > 1:   # the first retry is at once: a kept connection the endpoint had closed
                    self._backoff(attempt)
                continue
            if status < 300:
                answer = json.loads(data) if data else {}
                answer["ResponseMetadata"] = {"HTTPStatusCode": status, "RequestId": headers.get("x-amzn-requestid")}
                return answer
            error = self._error(operation, status, headers, data)
            code = error.response["Error"]["Code"]
            if attempt == self._attempts or not (status in RETRY_STATUS or code in THROTTLING):
                raise error
            self._backoff(attempt)
        raise AssertionError("unreachable")

    def _send(self, operation: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        creds = self._credentials.get_frozen_credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        headers = self._signer.headers(self._path, {
            "Host": self._netloc, "Content-Type": self._content_type,
            "X-Amz-Target": f"{self._target}.{operation}"}, body, creds.access_key, creds.secret_key,
            creds.token, amz_date)
        conn = self._connection()
        conn.request("POST", self._path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.will_close:
            self._drop()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self._connect_timeout)
            conn.connect()
            conn.sock.settimeout(self._read_timeout)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _backoff(self, attempt: int) -> None:
        self._sleep(random.random() * min(MAX_BACKOFF_S, 0.05 * 2 ** attempt))

    def _error(self, operation: str, status: int, headers: dict[str, str], data: bytes) -> Exception:
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        # SQS answers its JSON errors with the query protocol's code in a header (awsQueryCompatible),
        # which is the code botocore reports (e.g. AWS.SimpleQueueService.NonExistentQueue).
        query_code = headers.get("x-amzn-query-error", "").split(";", 1)[0]
        code = query_code or str(doc.get("__type") or doc.get("code") or status).rsplit("#", 1)[-1]
        message = doc.get("message") or doc.get("Message") or ""
        response = {"Error": {"Code": code, "Message": message},
                    "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": headers.get("x-amzn-requestid")}}
        return self.exceptions.from_code(code)(response, operation)

    def close(self) -> None:
        self._drop()
