"""Lambda's request constraints, checked as AWS checks them, with AWS's own words.

The patterns and lengths are the ones AWS prints in its ValidationException for Invoke (recorded
against AWS: LocalStack's test_function_name_and_qualifier_validation[invoke] snapshot; the older
API reference's Invoke page gives the same: FunctionName 1-170, Qualifier 1-128). Several broken
constraints make one message: "2 validation errors detected: A; B". The JSON error texts are
Jackson's, which AWS's front end uses ("Could not parse request body into json: ...").
Everything here is pure and costs microseconds (no I/O on the call path).
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from urllib.parse import unquote

from chalicelib.errors import InvalidRequestContent, ValidationError

FUNCTION_NAME_PATTERN = (r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
                         r"(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?")
QUALIFIER_PATTERN = r"(|[a-zA-Z0-9$_-]+)"
FUNCTION_NAME_MAX, QUALIFIER_MAX = 170, 128
INVOCATION_TYPES = ("DryRun", "RequestResponse", "Event")   # AWS's order in its message
LOG_TYPES = ("None", "Tail")
CLIENT_CONTEXT_MAX = 3583          # bytes of base64 (Invoke's ClientContext)
_NAME_RE, _QUALIFIER_RE = re.compile(FUNCTION_NAME_PATTERN), re.compile(QUALIFIER_PATTERN)
_KNOWN_GOOD: dict[str, "FunctionRef"] = {}
_KNOWN_MAX = 4096


@dataclass(frozen=True)
class FunctionRef:
    """What an Invoke's FunctionName says: a name, and maybe a qualifier, region and account."""
    name: str
    qualifier: str | None = None
    region: str | None = None
    account: str | None = None


def _constraint(value: str, member: str, what: str) -> str:
    return f"Value '{value}' at '{member}' failed to satisfy constraint: Member must {what}"


def _length_and_pattern(value: str, member: str, max_len: int, pattern: re.Pattern, text: str) -> list[str]:
    errors = []
    if len(value) > max_len:
        errors.append(_constraint(value, member, f"have length less than or equal to {max_len}"))
    if not pattern.fullmatch(value):
        errors.append(_constraint(value, member, f"satisfy regular expression pattern: {text}"))
    return errors


def check_invoke(raw_function: str, qualifier: str | None, invocation_type: str, log_type: str) -> FunctionRef:
    """The request's members against Lambda's constraints; the parsed FunctionName. One
    ValidationException naming every broken constraint, in the members' order."""
    value = unquote(raw_function)
    ref = _KNOWN_GOOD.get(value)
    errors = [] if ref is not None else _length_and_pattern(value, "functionName", FUNCTION_NAME_MAX, _NAME_RE,
                                                            FUNCTION_NAME_PATTERN)
    if invocation_type not in INVOCATION_TYPES:
        errors.append(_constraint(invocation_type, "invocationType",
                                  f"satisfy enum value set: [{', '.join(INVOCATION_TYPES)}]"))
    if log_type not in LOG_TYPES:
        errors.append(_constraint(log_type, "logType", f"satisfy enum value set: [{', '.join(LOG_TYPES)}]"))
    if qualifier is not None:
        errors += _length_and_pattern(qualifier, "qualifier", QUALIFIER_MAX, _QUALIFIER_RE, QUALIFIER_PATTERN)
    if errors:
        n = len(errors)
        raise ValidationError(f"{n} validation error{'s' if n > 1 else ''} detected: " + "; ".join(errors))
    if ref is None:
        ref = parse_function_ref(value)
        if len(_KNOWN_GOOD) >= _KNOWN_MAX:   # names come from requests: bounded
            _KNOWN_GOOD.clear()
        _KNOWN_GOOD[value] = ref
    return ref


def parse_function_ref(value: str) -> FunctionRef:
    """A FunctionName that satisfies the pattern: name, ARN or partial ARN, each maybe qualified."""
    parts = value.split(":")
    if value.startswith("arn:"):          # arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
        return FunctionRef(parts[6], parts[7] if len(parts) > 7 else None, parts[3], parts[4])
    if len(parts) >= 3 and parts[1] == "function":          # ACCOUNT:function:NAME[:QUALIFIER]
        return FunctionRef(parts[2], parts[3] if len(parts) > 3 else None, None, parts[0])
    if len(parts) >= 2 and parts[0] == "function":          # function:NAME[:QUALIFIER]
        return FunctionRef(parts[1], parts[2] if len(parts) > 2 else None)
    if len(parts) == 2:                                      # NAME:QUALIFIER
        return FunctionRef(parts[0], parts[1])
    return FunctionRef(value)


def check_json(payload: bytes) -> None:
    try:
        json.loads(payload)
    except UnicodeDecodeError as e:
        _bad_json(f"Invalid UTF-8 start byte 0x{payload[e.start]:02x}", payload, e.start, e.start + 2)
    except json.JSONDecodeError as e:
        _bad_json(_jackson(e.doc, e.pos), payload, e.pos, e.pos + 1)
    except (ValueError, RecursionError) as e:
        _bad_json(str(e), payload, 0, 1)


def _jackson(doc: str, pos: int) -> str:
    """Jackson's wording for the first thing wrong at `pos` (AWS's front end parses with Jackson)."""
    expecting = "(JSON String, Number, Array, Object or token 'null', 'true' or 'false')"
    if pos >= len(doc):
        return "Unexpected end-of-input: expected close marker for Object"
    ch = doc[pos]
    if ch.isalpha():
        token = re.match(r"[A-Za-z0-9_]*", doc[pos:]).group(0)   # type: ignore[union-attr]
        return f"Unrecognized token '{token}': was expecting {expecting}"
    if ord(ch) < 32:
        return f"Unexpected character ((CTRL-CHAR, code {ord(ch)})): expected a valid value {expecting}"
    return f"Unexpected character ('{ch}' (code {ord(ch)})): expected a valid value {expecting}"


def _bad_json(detail: str, payload: bytes, pos: int, column: int) -> None:
    line = payload[:pos].count(b"\n") + 1
    if line > 1:
        column = pos - payload[:pos].rfind(b"\n")
    raise InvalidRequestContent("Could not parse request body into json: Could not parse payload into json: "
                                f"{detail}\n at [Source: REDACTED (`StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION` "
                                f"disabled); line: {line}, column: {column}]")


def client_context(header: str | None) -> str | None:
    """X-Amz-Client-Context: base64 of a JSON object; the JSON text, as the runtime receives it."""
    if not header:
        return None
    bad = InvalidRequestContent("Client context must be a valid Base64-encoded JSON object.")
    if len(header) > CLIENT_CONTEXT_MAX:
        raise bad
    try:
        text = base64.b64decode(header, validate=True).decode("utf-8")
        if not isinstance(json.loads(text), dict):
            raise bad
    except (binascii.Error, ValueError):
        raise bad from None
    return text
