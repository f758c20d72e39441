"""The operator's identity on the embedded AWS: profile `operator` in MK1_HOME/credentials.

The embedded AWS (infra/aws_gate.py) answers only requests signed by a key it knows: the users'
IAM access keys, and this one, which administers (mk1's own components, `mk1 …`, `awslocal`).
Whoever needs it first makes it (the AWS endpoint as it starts, or a client of it), under an
exclusive lock on the file, so two processes starting together agree on one key. It never
changes after that: rotating it means stopping the stack and deleting the profile.
"""
from __future__ import annotations

import configparser
import fcntl
import os
import secrets
import string
from contextlib import contextmanager
from pathlib import Path

PROFILE = "operator"
_UPPER = string.ascii_uppercase + string.digits


@contextmanager
def locked(path: Path):
    """An exclusive lock beside the credentials file, for a read-modify-write of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read(path: Path) -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(path)
    return cfg


def write(path: Path, cfg: configparser.ConfigParser) -> None:
    """Created 0600 from the first byte, replaced whole (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        cfg.write(f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def new_key() -> tuple[str, str]:
    """An access key id and secret of AWS's forms (AKIA + 16, 40 characters)."""
    akid = "AKIA" + "".join(secrets.choice(_UPPER) for _ in range(16))
    return akid, secrets.token_urlsafe(30)[:40]


def ensure(path: Path, region: str = "us-east-1") -> tuple[str, str]:
    """The operator's (access key id, secret), made now if the file has none."""
    cfg = read(path)
    if PROFILE in cfg and cfg[PROFILE].get("aws_access_key_id"):
        return cfg[PROFILE]["aws_access_key_id"], cfg[PROFILE]["aws_secret_access_key"]
    with locked(path):
        cfg = read(path)   # again, under the lock: another process may have made it meanwhile
        if PROFILE not in cfg or not cfg[PROFILE].get("aws_access_key_id"):
            akid, secret = new_key()
            cfg[PROFILE] = {"aws_access_key_id": akid, "aws_secret_access_key": secret, "region": region}
            write(path, cfg)
        return cfg[PROFILE]["aws_access_key_id"], cfg[PROFILE]["aws_secret_access_key"]
