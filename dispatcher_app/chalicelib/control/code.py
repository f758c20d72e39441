"""Functions' code: deployment zips fetched and unpacked once per CodeSha256."""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import shutil
import threading
import urllib.request
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from infra import names

from chalicelib.errors import ServiceUnavailable
from chalicelib.model import FunctionConfig

log = logging.getLogger("mk1.code")


class CodeStore:
    """Deployment zips unpacked once per CodeSha256 under MK1_HOME/code/."""

    def __init__(self, lam, s3, root: Path, local_endpoint: bool = True):
        self.lam, self.s3, self.root = lam, s3, root
        # Against a local endpoint, a code Location naming an AWS host is unreachable
        # (and traffic must stay local): only fetch from local-looking hosts then.
        self.local_endpoint = local_endpoint
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def directory(self, config: FunctionConfig) -> Path:
        key = base64.b64decode(config.code_sha).hex() if config.code_sha else "unknown"
        target = self.root / key
        if target.exists():
            return target
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if not target.exists():
                self._unpack(self._fetch(config), target)
        return target

    def _fetch(self, config: FunctionConfig) -> bytes:
        location = self.lam.get_function(FunctionName=config.name, Qualifier=config.version)["Code"].get("Location", "")
        data = self._download(location) if self._may_download(location) else None
        if data is None:
            # moto keeps code it cannot serve: read the S3 object that infra deployed it from.
            key = urlparse(location).path.lstrip("/")
            try:
                data = self.s3.get_object(Bucket=names.CODE_BUCKET, Key=key)["Body"].read()
            except ClientError as e:
                raise ServiceUnavailable(
                    f"cannot fetch the code of {config.name} ({location}); deploy code with "
                    f"`mk1 deploy` or update-function-code --s3-bucket {names.CODE_BUCKET}") from e
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if config.code_sha and digest != config.code_sha:
            log.info("%s: code changed while fetching (%s != %s)", config.name, digest, config.code_sha)
        return data

    def _may_download(self, location: str) -> bool:
        host = urlparse(location).hostname or ""
        if not location.startswith("http"):
            return False
        return not self.local_endpoint or host in ("127.0.0.1", "localhost", "::1") or \
            host == "localstack" or host.endswith(".localstack.cloud")

    @staticmethod
    def _download(location: str) -> bytes | None:
        try:
            with urllib.request.urlopen(location, timeout=5) as r:
                return r.read()
        except Exception:
            return None

    @staticmethod
    def _unpack(data: bytes, target: Path) -> None:
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for member in z.namelist():   # no member may escape the directory
                if member.startswith("/") or ".." in Path(member).parts:
                    raise ServiceUnavailable(f"refusing a deployment zip with path {member!r}")
            z.extractall(tmp)
            for info in z.infolist():   # zipfile drops the modes: a bootstrap must stay executable
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    (tmp / info.filename).chmod(mode | 0o400)
        tmp.rename(target)
