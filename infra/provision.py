"""Creates (or brings up to date) every AWS resource mk1 needs. Safe to run twice.

`provision(settings)` is the one call; `mk1 deploy` and `mk1 up` use it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from my_mk1_homework.settings import Settings

from . import aws, names, operator_key, package

POLICY_DIR = Path(__file__).resolve().parent / "policies"

LAMBDA_TRUST = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
})


@dataclass
class Provisioned:
    functions: dict[str, str] = field(default_factory=dict)      # name -> CodeSha256
    queues: dict[str, str] = field(default_factory=dict)         # queue name -> URL
    users: dict[str, str] = field(default_factory=dict)          # user -> access key id
    credentials_file: Path | None = None


def _exists(err: ClientError, *codes: str) -> bool:
    return err.response["Error"]["Code"] in codes


def function_environment(settings: Settings, function: str) -> dict[str, str]:
    prefix = "MK1_ALPHA_" if function == "RuntimeAlpha" else "MK1_BETA_"
    env = {}
    for knob in ("LOAD_SECONDS", "GENERATE_SECONDS"):
        value = getattr(settings, prefix + knob)
        if value is not None:
            env[knob] = repr(float(value))
    return env


class Provisioner:
    def __init__(self, settings: Settings):
        self.s = settings
        self.iam = aws.client(settings, "iam")
        self.sqs = aws.client(settings, "sqs")
        self.ddb = aws.client(settings, "dynamodb")
        self.lam = aws.client(settings, "lambda")
        self.logs = aws.client(settings, "logs")
        self.s3 = aws.client(settings, "s3")
        self.secrets = aws.client(settings, "secretsmanager")

    # -- IAM users, keys and the secret the dispatcher verifies signatures with --
    def users(self) -> dict[str, dict[str, str]]:
        stored = self._read_user_secret()
        keys: dict[str, dict[str, str]] = {}
        for user in names.USERS:
            try:
                self.iam.create_user(UserName=user, Tags=[{"Key": "mk1", "Value": "user"}])
            except ClientError as e:
                if not _exists(e, "EntityAlreadyExists"):
                    raise
            policy = (POLICY_DIR / f"{user}.json").read_text()
            self.iam.put_user_policy(UserName=user, PolicyName=f"mk1-{user}", PolicyDocument=policy)
            live = {k["AccessKeyId"] for k in self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]}
            known = [(akid, v["secret"]) for akid, v in stored.items() if v["user"] == user and akid in live]
            if known:
                akid, secret = known[0]
            else:
                for stale in live:  # keys whose secret we no longer hold are useless: remove them
                    self.iam.delete_access_key(UserName=user, AccessKeyId=stale)
                new = self.iam.create_access_key(UserName=user)["AccessKey"]
                akid, secret = new["AccessKeyId"], new["SecretAccessKey"]
            keys[akid] = {"user": user, "secret": secret}
        self._write_user_secret(keys)
        return keys

    def _read_user_secret(self) -> dict[str, dict[str, str]]:
        try:
            raw = self.secrets.get_secret_value(SecretId=names.USERS_SECRET)["SecretString"]
            return json.loads(raw).get("keys", {})
        except ClientError as e:
            if _exists(e, "ResourceNotFoundException"):
                return {}
            raise

    def _write_user_secret(self, keys: dict[str, dict[str, str]]) -> None:
        body = json.dumps({"keys": keys})
        try:
            self.secrets.create_secret(Name=names.USERS_SECRET, SecretString=body,
                                       Description="mk1 user access keys (for SigV4 verification)")
        except ClientError as e:
            if not _exists(e, "ResourceExistsException"):
                raise
            self.secrets.put_secret_value(SecretId=names.USERS_SECRET, SecretString=body)

    def write_credentials(self, keys: dict[str, dict[str, str]]) -> Path:
        """The users' profiles, written beside whatever else the file holds (the operator's)."""
        path = self.s.credentials_file
        with operator_key.locked(path):
            cfg = operator_key.read(path)
            for user in names.USERS:
                cfg.remove_section(user)
            for akid, v in sorted(keys.items(), key=lambda kv: kv[1]["user"]):
                cfg[v["user"]] = {"aws_access_key_id": akid, "aws_secret_access_key": v["secret"],
                                  "region": self.s.region}
            operator_key.write(path, cfg)
        return path

    # -- queues, tables, log groups --
    def queues(self) -> dict[str, str]:
        urls = {}
        for fn in names.FUNCTIONS:
            urls[names.queue_name(fn)], urls[names.dlq_name(fn)] = ensure_queues(self.sqs, fn)
        return urls

    def tables(self) -> None:
        self._table(names.USAGE_TABLE,
                    attrs=[("user", "S"), ("sk", "S"), ("function", "S")],
                    keys=[("user", "HASH"), ("sk", "RANGE")],
                    gsis=[{"IndexName": names.USAGE_BY_FUNCTION_INDEX,
                           "KeySchema": [{"AttributeName": "function", "KeyType": "HASH"},
                                         {"AttributeName": "sk", "KeyType": "RANGE"}],
                           "Projection": {"ProjectionType": "ALL"}}])
        self._table(names.RESULTS_TABLE, attrs=[("request_id", "S")], keys=[("request_id", "HASH")])
        try:   # cluster claims and old results expire by themselves on AWS
            self.ddb.update_time_to_live(TableName=names.RESULTS_TABLE, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": names.RESULTS_TTL_ATTRIBUTE})
        except ClientError as e:
            if not _exists(e, "ValidationException"):   # "TimeToLive is already enabled"
                raise
        # Cluster mode's concurrency leases (function, slot): see chalicelib/cluster/leases.py.
        self._table(names.LEASES_TABLE, attrs=[("function", "S"), ("slot", "N")],
                    keys=[("function", "HASH"), ("slot", "RANGE")])

    def _table(self, name, attrs, keys, gsis=None) -> None:
        kw = dict(TableName=name, BillingMode="PAY_PER_REQUEST",
                  AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in attrs],
                  KeySchema=[{"AttributeName": a, "KeyType": t} for a, t in keys])
        if gsis:
            kw["GlobalSecondaryIndexes"] = gsis
        try:
            self.ddb.create_table(**kw)
            self.ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
        except ClientError as e:
            if not _exists(e, "ResourceInUseException"):
                raise

    def log_groups(self) -> None:
        for fn in names.FUNCTIONS:
            try:
                self.logs.create_log_group(logGroupName=names.log_group(fn))
            except ClientError as e:
                if not _exists(e, "ResourceAlreadyExistsException"):
                    raise

    # -- the functions themselves --
    def role_arn(self) -> str:
        try:
            return self.iam.create_role(RoleName=names.LAMBDA_ROLE,
                                        AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]["Arn"]
        except ClientError as e:
            if not _exists(e, "EntityAlreadyExists"):
                raise
            return self.iam.get_role(RoleName=names.LAMBDA_ROLE)["Role"]["Arn"]

    def upload_code(self, function: str, zip_bytes: bytes) -> dict[str, str]:
        try:
            self.s3.create_bucket(Bucket=names.CODE_BUCKET)
        except ClientError as e:
            if not _exists(e, "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        key = names.code_key(function, package.sha_hex(package.code_sha256(zip_bytes)))
        self.s3.put_object(Bucket=names.CODE_BUCKET, Key=key, Body=zip_bytes)
        return {"S3Bucket": names.CODE_BUCKET, "S3Key": key}

    def functions(self) -> dict[str, str]:
        role = self.role_arn()
        shas = {}
        for fn in names.FUNCTIONS:
            zip_bytes = package.build_zip(fn)
            sha = package.code_sha256(zip_bytes)
            code = self.upload_code(fn, zip_bytes)
            config = dict(Role=role, Handler="handler.handler", Runtime="python3.11",
                          Timeout=self.s.MK1_FUNCTION_TIMEOUT, MemorySize=self.s.MK1_FUNCTION_MEMORY,
                          Environment={"Variables": function_environment(self.s, fn)},
                          Description=f"mk1 {fn}")
            try:
                current = self.lam.get_function(FunctionName=fn)["Configuration"]
            except ClientError as e:
                if not _exists(e, "ResourceNotFoundException"):
                    raise
                self.lam.create_function(FunctionName=fn, Code=code, Publish=False, **config)
            else:
                if current.get("CodeSha256") != sha:
                    self.lam.update_function_code(FunctionName=fn, **code)
                self.lam.update_function_configuration(FunctionName=fn, **config)
            self.lam.put_function_concurrency(FunctionName=fn,
                                              ReservedConcurrentExecutions=names.RESERVED_CONCURRENCY)
            shas[fn] = sha
        return shas


def provision(settings: Settings) -> Provisioned:
    p = Provisioner(settings)
    out = Provisioned()
    keys = p.users()
    out.users = {v["user"]: akid for akid, v in keys.items()}
    out.credentials_file = p.write_credentials(keys)
    out.queues = p.queues()
    p.tables()
    p.log_groups()
    out.functions = p.functions()
    return out


def ensure_queues(sqs, fn: str) -> tuple[str, str]:
    """The function's queue pair (the waiting calls' queue and its DLQ), made or brought up to date:
    provisioning makes the built-in functions' pairs; the dispatcher makes a deployed function's
    on its first call. Idempotent. -> (queue URL, DLQ URL)."""
    dlq = sqs.create_queue(QueueName=names.dlq_name(fn), Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attrs = {
        "VisibilityTimeout": "900",
        "MessageRetentionPeriod": "1209600",
        # A message received this often without being finished is poison: park it.
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
    }
    try:
        q = sqs.create_queue(QueueName=names.queue_name(fn), Attributes=attrs)["QueueUrl"]
    except ClientError as e:
        if not _exists(e, "QueueAlreadyExists", "QueueNameExists"):
            raise
        q = sqs.get_queue_url(QueueName=names.queue_name(fn))["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=q, Attributes=attrs)
    return q, dlq
