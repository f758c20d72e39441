"""Call payloads inside SQS messages: inline when small, in S3 when not.

An SQS message holds at most 256 KiB, a Lambda payload up to 6 MB (1 MB for Event
calls), and base64 grows it by a third: anything past INLINE_MAX goes to the mk1
bucket under calls/ and the message carries its key. Whoever consumes the payload
deletes the object.
"""
from __future__ import annotations

import base64
import logging

from infra import names

log = logging.getLogger("mk1.payloads")

INLINE_MAX = 160 * 1024
PREFIX = names.PAYLOAD_PREFIX


def pack(s3, data: bytes, key: str) -> dict:
    if len(data) <= INLINE_MAX:
        return {"b64": base64.b64encode(data).decode()}
    s3.put_object(Bucket=names.CODE_BUCKET, Key=PREFIX + key, Body=data)
    return {"s3": PREFIX + key}


def unpack(s3, packed: dict | str) -> bytes:
    if isinstance(packed, str):          # a message written before payloads could spill to S3
        return base64.b64decode(packed)
    if "s3" in packed:
        return s3.get_object(Bucket=names.CODE_BUCKET, Key=packed["s3"])["Body"].read()
    return base64.b64decode(packed["b64"])


def discard(s3, packed: dict | str) -> None:
    if isinstance(packed, dict) and "s3" in packed:
        try:
            s3.delete_object(Bucket=names.CODE_BUCKET, Key=packed["s3"])
        except Exception as e:   # a leftover object costs storage, not correctness
            log.warning("deleting %s failed: %s", packed["s3"], e)
