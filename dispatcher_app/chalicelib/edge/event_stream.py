"""AWS's event-stream framing (application/vnd.amazon.eventstream), as InvokeWithResponseStream
answers in it and botocore's EventStream reads it: each message is a prelude (total length,
headers length, the prelude's CRC32), string headers, the payload, and the message's CRC32.
https://docs.aws.amazon.com/lambda/latest/api/API_InvokeWithResponseStream.html
"""
from __future__ import annotations

import json
import struct
import zlib

CONTENT_TYPE = "application/vnd.amazon.eventstream"


def message(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    encoded = b"".join(bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value.encode()))
                       + value.encode() for name, value in headers)
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return head + struct.pack(">I", zlib.crc32(head))


def payload_chunk(data: bytes) -> bytes:
    return message([(":event-type", "PayloadChunk"), (":content-type", "application/octet-stream"),
                    (":message-type", "event")], data)


def invoke_complete(error_code: str | None = None, error_details: str | None = None,
                    log_result: str | None = None) -> bytes:
    body = {k: v for k, v in (("ErrorCode", error_code), ("ErrorDetails", error_details),
                              ("LogResult", log_result)) if v is not None}
    return message([(":event-type", "InvokeComplete"), (":content-type", "application/json"),
                    (":message-type", "event")], json.dumps(body).encode())
