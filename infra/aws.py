"""boto3 clients for mk1's own components, pointed at the configured AWS endpoint."""
from __future__ import annotations

import os

import boto3
from botocore.config import Config

from my_mk1_homework.settings import Settings

from . import operator_key
from .json_client import JsonClient



def _is_local(url: str) -> bool:
    return any(h in url for h in ("127.0.0.1", "localhost", "localstack", "[::1]"))


def session(settings: Settings) -> boto3.session.Session:
    """mk1's components sign as the operator (infra/operator_key.py) on a local endpoint: the embedded
    AWS answers no other key for them (infra/aws_gate.py), and LocalStack takes any key. Real AWS
    (or MK1_AWS_USE_ENV_KEYS) uses the default credential chain."""
    if _is_local(settings.aws_endpoint) and not os.environ.get("MK1_AWS_USE_ENV_KEYS"):
        akid, secret = operator_key.ensure(settings.credentials_file, settings.region)
        return boto3.session.Session(region_name=settings.region, aws_access_key_id=akid,
                                     aws_secret_access_key=secret)
    return boto3.session.Session(region_name=settings.region)


def client(settings: Settings, service: str, *, timeout: float = 10, retries: int = 2,
           sess: boto3.session.Session | None = None):
    cfg = Config(connect_timeout=min(timeout, 5), read_timeout=timeout,
                 retries={"max_attempts": retries, "mode": "standard"}, max_pool_connections=32)
    endpoint = settings.aws_endpoint if (settings.AWS_ENDPOINT_URL or settings.embedded_aws) else None
    return (sess or session(settings)).client(service, endpoint_url=endpoint, config=cfg)


def json_client(settings: Settings, service: str, *, timeout: float = 10, retries: int = 2) -> JsonClient:
    """The lean stand-in for client() (infra/json_client.py), for callers that send plain-JSON requests
    of fixed shapes built by mk1's own code to a JSON-protocol service (SQS, DynamoDB, CloudWatch Logs):
    ~1/3 of botocore's CPU a request. No parameter validation: a malformed request is the endpoint's
    error (the integration tests send each of those shapes to the real moto server)."""
    sess = session(settings)
    return JsonClient(client(settings, service, timeout=timeout, retries=retries, sess=sess),
                      sess.get_credentials())


def account_id(settings: Settings) -> str:
    return client(settings, "sts").get_caller_identity()["Account"]
