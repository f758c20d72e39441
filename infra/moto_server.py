"""The embedded AWS's process: moto's own server, with a few of its per-request costs taken out
and its DynamoDB writes made atomic with their conditions, as DynamoDB's are.

    python -m infra.moto_server -H 127.0.0.1 -p 4566      (the same flags as `moto_server`)

Profiled at the cap (figure 2 of the benchmarks: 30 clients, every waiting call a message in SQS),
moto burned 12-15 ms of CPU per call on the same 2 cores as the dispatcher and the functions;
these spots of moto 5.2 took most of it, none doing anything a user could observe:

- every ReceiveMessage checks each message it returns against the queue's retention period by
  calling `get_queue_attributes`, which builds the queue's whole attribute map three times, and
  each build counts the queue's visible, in-flight and delayed messages (three scans of the queue,
  a clock read per message). Here the retention period is read straight off the queue: the same
  value (`MessageRetentionPeriod`, an int once set), the same comparison.
- every SendMessage read ContentBasedDeduplication through the same whole-map build four times
  (validation, send, the FIFO duplicate check), so a send to a queue 1,000 calls deep scanned it
  twelve times. It is read straight off the queue, as the map would show it (moto's own methods,
  recompiled with that one expression changed: `_rewrite`). The counts still scan the queue
  calling moto's clock for each message (two datetimes per reading): SQS's clock for "now" is read
  as time.time() instead, the same instant without the datetimes.
- every SQS message and every log line moto makes stays in a class-wide list for its dashboard's
  data (BaseModel's instance tracking), deleted or not, for the life of the server: memory, and a
  garbage collector walking them all. These two kinds are not tracked. Measured on figure 4 of
  the benchmarks (1,000 calls at once) with the send fix: moto's CPU 2.0 -> 1.4-1.6 ms a call.
- every DeleteMessage scanned the whole queue twice, building each message's list of receipt
  handles, then rebuilt the queue's list a message at a time; every ReceiveMessage listed every
  visible message (a clock read or two each) before taking the first; every message received drew
  its 185-letter receipt handle with 185 calls to random.choice. Now a delete stops at the one
  message holding the handle and slices the list around it, a receive reads the messages as it
  goes, a handle is drawn in one call: receiving and deleting 3,000 messages in tens (in process,
  through boto3) 4.4 -> 2.4 s of CPU.
- every SQS message received was deep-copied (its attributes, and every receipt handle it had had)
  before its attributes were filtered by assigning the copy a new dict: a shallow copy is the same
  for that. Its new receipt handle, 185 letters, was drawn a letter at a time (~0.12 ms): the letters
  now come from random bytes at once, each as likely as before.
- every JSON-protocol answer (SQS, DynamoDB, Logs, ...) went through moto's generic serializer, which
  for each member of each value builds a context object and asks six alias providers which key
  holds it: 1 ms of a ten-message receive's 2.4 ms of CPU. A result of plain data (dicts, lists,
  strings, numbers) is now built directly, with the keys the providers pick for a dict, asked once
  per member of the service model; a model object, a timestamp or a blob still goes moto's way.
  SendMessageBatch + ReceiveMessage + DeleteMessageBatch of ten, in process: 6.7 -> 4.2 ms of CPU;
  figure 4 of the benchmarks (1,000 calls at once): moto's CPU 1.34-1.45 -> 1.07-1.17 ms a call.
- every JSON request object was parsed by looking each member of its shape up in it: a usage
  record's 19 attributes are 19 DynamoDB AttributeValues of ten members each, one of them set. The
  object's own keys are looked up in the shape instead (the same members, in the shape's order):
  a BatchWriteItem of 25 usage records, in process, 9.7 -> 9.1 ms of CPU.
- every item written to DynamoDB is built attribute by attribute into a dict that, before each
  insert, re-adds the sizes of all the attributes already in it (to enforce the 400 KB item
  limit): quadratic in the attributes, ~0.3 ms of moto CPU per usage record (19 attributes).
  Items are built with the same check, against a running total.
- every request lists moto's package folder (listdir + ~150 isdir) to learn its service names,
  and lists its response class's methods (inspect.getmembers); neither the installed package nor
  the classes change while the server runs, so each is read once.
- werkzeug closes every connection after its answer ("Connection: close"), so each request of
  every client opened a TCP connection and moto started a thread for it; then, answered, the
  thread drained the socket. Connections are kept open (HTTP/1.1 keep-alive): a request's body is
  read whole, by its Content-Length, before moto sees it, so the next request line is never
  mistaken for body. A chunked request body still closes, as werkzeug does. Measured on a loop of
  SQS send/receive/delete and a DynamoDB put: moto's CPU 7.9 -> 4.2 s, the client's 12.3 -> 9.2 ms
  per loop, latency 35 -> 21 ms.

One patch is for fidelity, not speed:

- DynamoDB applies a write and its condition atomically. moto's server runs each request on a
  thread of its own and checks a condition, then writes, with nothing held between the two: two
  conditional puts racing for one item could both succeed (6 threads putting the same 150 keys
  `attribute_not_exists`: 2-7 keys won twice). Cluster mode's leases and claims are such puts: two
  dispatchers could hold the same slot (the likely cause of a cluster test that once saw 4 calls
  run under a cap of 3 on a loaded machine). Every write to the tables (put, update, delete,
  transaction; BatchWriteItem writes through put and delete) is done under one lock.

Others carry moto's Lambda API where mk1 needs more of it (infra/moto_lambda.py: function code
served back from this server, published versions that keep their code).

Each patch checks that the code it replaces is what it expects (moto is pinned in constraints.txt)
and otherwise leaves moto as it is: mk1 then runs slower (without the last one, cluster mode's cap
holds only as far as moto's race lets it), never differently otherwise.
"""
from __future__ import annotations

import copy
import inspect
import io
import logging
import sys
import textwrap
import threading
import time

from infra import moto_lambda

log = logging.getLogger("mk1.moto")


def _swap(owner, attr: str, expect: str, make) -> bool:
    """Replace `owner.attr` with `make(original)` if the original's source still contains `expect`
    (the code the replacement was written against). True if in place, now or before."""
    original = getattr(owner, attr)
    if getattr(original, "mk1", False):
        return True
    if expect not in inspect.getsource(original):
        return False
    replacement = make(original)
    replacement.mk1 = True
    setattr(owner, attr, replacement)
    return True


def _fix_retention_check() -> bool:
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def make(_original):
        def is_message_valid_based_on_retention_period(self, queue_name: str, message) -> bool:
            retention_period = int(self.get_queue(queue_name).message_retention_period)
            return retention_period + message.sent_timestamp / 1000 > unix_time()
        return is_message_valid_based_on_retention_period

    return _swap(SQSBackend, "is_message_valid_based_on_retention_period", "get_queue_attributes", make)


def _fast_sqs_clock() -> bool:
    from moto.sqs import models

    def make_s(slow):
        return lambda dt=None: time.time() if dt is None else slow(dt)

    def make_ms(slow):
        return lambda dt=None: time.time() * 1000.0 if dt is None else slow(dt)

    return (_swap(models, "unix_time", "utcnow()", make_s)
            and _swap(models, "unix_time_millis", "unix_time(dt) * 1000", make_ms))


def _cache_module_list() -> bool:
    from moto import backends

    def make(original):
        names = tuple(original())
        return lambda: names

    return _swap(backends, "list_of_moto_modules", "listdir", make)


def _cache_method_names() -> bool:
    from moto.core import responses

    def make(original):
        cache: dict[type, list[str]] = {}

        def method_names_from_class(clazz) -> list[str]:
            names = cache.get(clazz)
            if names is None:
                names = cache[clazz] = original(clazz)
            return list(names)
        return method_names_from_class

    return _swap(responses, "method_names_from_class", "getmembers", make)


def _linear_item_size_check() -> bool:
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models import dynamo_type
    from moto.dynamodb.models.utilities import bytesize

    DynamoType, LimitedSizeDict = dynamo_type.DynamoType, dynamo_type.LimitedSizeDict

    def make(_original):
        def __init__(self, hash_key, range_key, attrs) -> None:
            self.hash_key = hash_key
            self.range_key = range_key
            # LimitedSizeDict.__setitem__'s check for each new key: the sizes of the keys and values
            # already in (a running total here: nothing else touches the dict while it is built)
            # plus the new pair's, over 405000 -> ItemSizeTooLarge. Later writes keep its own check.
            self.attrs = LimitedSizeDict()
            size = 0
            for key, value in attrs.items():
                value = DynamoType(value)
                pair = bytesize(key) + value.size()
                if size + pair > 405000:
                    raise ItemSizeTooLarge
                dict.__setitem__(self.attrs, key, value)
                size += pair
        return __init__

    return _swap(dynamo_type.Item, "__init__", "LimitedSizeDict()", make)


def _atomic_dynamodb_writes() -> bool:
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()   # re-entrant, should one wrapped write call another

    def make(original):
        def write(self, *args, **kwargs):
            with lock:
                return original(self, *args, **kwargs)
        write.__name__, write.__doc__ = original.__name__, original.__doc__
        return write

    return all([_swap(DynamoDBBackend, "put_item", "table.put_item", make),
                _swap(DynamoDBBackend, "update_item", "condition_expression", make),
                _swap(DynamoDBBackend, "delete_item", "condition_expression", make),
                _swap(DynamoDBBackend, "transact_write_items", "transact_items", make)])


def _send_answer(handler, status: str, headers: list, body: bytes) -> None:
    """The app's answer on a kept connection: its headers but Connection, a Content-Length, head and
    body in one write."""
    code_text, _, reason = status.partition(" ")
    code = int(code_text)
    handler.send_response(code, reason)
    names = set()
    for name, value in headers:
        if name.lower() != "connection":
            handler.send_header(name, value)
            names.add(name.lower())
    bodiless = handler.command == "HEAD" or code < 200 or code in (204, 304)
    if "content-length" not in names and not bodiless:
        handler.send_header("Content-Length", str(len(body)))
    if handler.close_connection:
        handler.send_header("Connection", "close")
    handler._headers_buffer.append(b"\r\n")   # what end_headers() adds; head and body in one write
    if not bodiless:
        handler._headers_buffer.append(body)
    handler.flush_headers()


def _dedup_setting(queue):
    """`queue.attributes.get("ContentBasedDeduplication")` without building the map: a standard
    queue's map has no such key; a FIFO queue's value is the one set, a bool as "true"/"false"."""
    if not queue.fifo_queue:
        return None
    value = getattr(queue, "content_based_deduplication", None)
    return str(value).lower() if isinstance(value, bool) else value


def _rewrite(owner, attr: str, changes: dict[str, str], helpers: dict) -> bool:
    """Replace `owner.attr` with moto's own function, compiled from its source with each occurrence
    of each `changes` key (each must be there) replaced by its value; True if in place, now or
    before. For a change of an expression inside a long method: a copy of the whole would drift
    from the pinned moto unseen. It is compiled into moto's module (its names resolve there, live,
    as the original's do), with `helpers` (the names the new code uses, "_mk1_"-prefixed) added."""
    original = getattr(owner, attr)
    if getattr(original, "mk1", False):
        return True
    source = textwrap.dedent(inspect.getsource(original))
    if not all(old in source for old in changes):
        return False
    for old, new in changes.items():
        source = source.replace(old, new)
    module = original.__globals__
    module.update(helpers)
    namespace: dict = {}
    exec(compile(source, inspect.getsourcefile(original), "exec"), module, namespace)
    replacement = namespace[attr]
    replacement.mk1 = True
    setattr(owner, attr, replacement)
    return True


def _sqs_dedup_flag() -> bool:
    from moto.sqs.models import Queue, SQSBackend

    return all(_rewrite(owner, name,
                        {f'{var}.attributes.get("ContentBasedDeduplication")': f"_mk1_dedup_setting({var})"},
                        {"_mk1_dedup_setting": _dedup_setting})
               for owner, name, var in ((SQSBackend, "_validate_message", "queue"),
                                        (SQSBackend, "send_message", "queue"), (Queue, "add_message", "self")))


def _sqs_delete_one_pass() -> bool:
    from moto.sqs.exceptions import ReceiptHandleIsInvalid
    from moto.sqs.models import Queue

    def make(_original):
        def delete_message(self, receipt_handle: str) -> None:
            """moto's: the message that had this receipt handle leaves the queue (pending or not),
            its handles noted as deleted; none: ReceiptHandleIsInvalid. moto scans for every message
            that had it, twice, building each one's list of handles, and rebuilds the queue's list
            a message at a time. A handle is 185 random letters given to one receive of one message,
            so the first match is the only one: the scan stops there (from the oldest, which a
            consumer deletes first), and the list is rebuilt around it in two slices. Still a new
            list, as moto makes: a receive iterating the old one on another thread is not disturbed."""
            if receipt_handle in self.deleted_messages:
                return   # already deleted: deleting it again is no error
            messages = self._messages
            for i, message in enumerate(messages):
                if message.receipt_handle == receipt_handle or receipt_handle in message._old_receipt_handles:
                    break
            else:
                raise ReceiptHandleIsInvalid()
            self.pending_messages.discard(message)
            self.deleted_messages.update(message.all_receipt_handles)
            self._messages = messages[:i] + messages[i + 1:]
        return delete_message

    return _swap(Queue, "delete_message", "message.had_receipt_handle(receipt_handle) for message in self._messages",
                 make)


def _visible(queue):
    """`queue.messages` (the visible, undelayed ones, in order) read as the receive goes: a receive
    of 10 from a queue 3,000 deep looked at every message's clock twice before taking the first."""
    return (m for m in queue._messages if m.visible and not m.delayed)


def _sqs_receipt_handles() -> bool:
    from moto.sqs import models, utils

    def make(original):
        length = 185
        # Each random byte below 234 (9 x 26) is a letter (byte % 26), the rest are dropped: every
        # letter as likely as in moto's draws, ~0.12 ms of a receive's CPU per message -> ~3 us.
        letters = bytes(ord("a") + b % 26 if b < 234 else 0 for b in range(256))
        dropped = bytes(range(234, 256))

        def generate_receipt_handle() -> str:
            """185 lowercase letters from moto's random, as moto's, drawn from random bytes at once."""
            out = b""
            while len(out) < length:
                out += utils.random.randbytes(224).translate(letters, dropped)   # ~205 kept
            return out[:length].decode("ascii")
        return generate_receipt_handle

    ok = _swap(utils, "generate_receipt_handle", "random.choice(string.ascii_lowercase) for x in range(length)", make)
    if ok and getattr(models, "generate_receipt_handle", None) is not utils.generate_receipt_handle:
        models.generate_receipt_handle = utils.generate_receipt_handle   # models imported it by name
    return ok


def _copy_message(message):
    """What moto's receive hands its answer: a copy of the message whose attributes it then filters
    (by assigning a new dict). moto deep-copies the whole message (its attributes, system attributes,
    every receipt handle it has had): ~0.13 ms a message. A shallow copy is the same for that: the
    filter replaces the copy's dict, and the answer only reads the rest."""
    return copy.copy(message)


def _sqs_receive() -> bool:
    from moto.sqs.models import SQSBackend
    return _rewrite(SQSBackend, "receive_message",
                    {"for message in queue.messages:": "for message in _mk1_visible(queue):",
                     "message_copy = deepcopy(message)": "message_copy = _mk1_copy_message(message)"},
                    {"_mk1_visible": _visible, "_mk1_copy_message": _copy_message})


class _NotPlain(Exception):
    """A result the plain-data walk does not take: moto's serializer answers it."""


_PICKED: dict[tuple, tuple] = {}   # (id(member shape), key) -> (the shape, the keys moto tries in order)


def _plain_json(serializer, value, shape):
    """What moto's JSON serializer makes of `value` for `shape`, for results of dicts, lists, strings,
    numbers and bools only (a queue's answers: SendMessageBatch, ReceiveMessage, DeleteMessageBatch).
    Anything else (a model object, a timestamp, a blob, a None inside a list or map, a renamed member)
    raises _NotPlain and moto's own serializer runs instead. moto builds a context object and asks
    six alias providers per member per value (what key of the object holds "Messages"?): ~1 ms of a
    ten-message receive's ~2.4. The keys they try for a dict depend only on the member's shape and
    name, so they are asked once per member (moto's own code) and remembered."""
    kind = shape.type_name
    if kind == "structure":
        if shape.is_document_type or type(value) is not dict:
            raise _NotPlain
        out = {}
        for key, member in shape.members.items():
            member.parent = shape   # as moto's walk sets it (its aliases read it)
            picked = _PICKED.get((id(member), key))
            if picked is None or picked[0] is not member:
                from moto.core.serialize import AttributePickerContext
                context = AttributePickerContext(obj=value, key=key, shape=member,
                                                 operation_model=serializer.operation_model,
                                                 service_model=serializer.service_model)
                keys = tuple(serializer._value_picker.get_possible_keys(context))
                if any("." in k for k in keys) or member.serialization.get("name", key) != key:
                    raise _NotPlain
                picked = _PICKED[(id(member), key)] = (member, keys)
            for k in picked[1]:
                if k in value:
                    v = value[k]
                    if v is not None:
                        out[key] = _plain_json(serializer, v, member)
                    break
        return out
    if kind == "list":
        if type(value) is not list or shape.member.serialization.get("name"):
            raise _NotPlain
        return [_plain_json(serializer, item, shape.member) if item is not None else _not_plain()
                for item in value]
    if kind == "map":
        if type(value) is not dict or shape.value.serialization.get("name"):
            raise _NotPlain
        return {k: _plain_json(serializer, v, shape.value) if v is not None else _not_plain()
                for k, v in value.items()}
    if kind == "string":
        if type(value) is str:
            return value
        if type(value) in (bool, int, float):
            return str(value)
        raise _NotPlain   # an Enum (moto takes its value), a {} or a [], or some object: moto's rules
    if kind == "boolean" and type(value) is bool:
        return value
    if kind in ("integer", "long") and type(value) is int:
        return value
    if kind in ("float", "double") and type(value) in (int, float):
        return float(value)
    raise _NotPlain   # a timestamp, a blob, or a value of another type than its shape's


def _not_plain():
    raise _NotPlain


def _fast_json_results() -> bool:
    from moto.core.serialize import JSONSerializer

    def make(original):
        def _serialize_result(self, resp, result):
            """moto's, for a result of plain data: the same body, built without its generic walk."""
            output_shape = self.operation_model.output_shape
            if (output_shape is None or getattr(self._value_picker, "response_transformers", None)
                    or type(self._value_picker).__name__ != "XFormedAttributePicker"):
                return original(self, resp, result)
            try:
                serialized = {} if result is None else _plain_json(self, result, output_shape)
            except _NotPlain:
                return original(self, resp, result)
            return self._serialized_result_to_response(resp, result, output_shape, serialized)
        return _serialize_result

    return _swap(JSONSerializer, "_serialize_result", "self._serialize(serialized_result, result, output_shape", make)


_MEMBERS: dict[int, tuple] = {}   # id(structure shape) -> (the shape, {JSON name: (place, member, its shape)})


def _members_by_json_name(shape):
    """A structure's members by their names in JSON, each with its place in the shape; None if two
    share a name (then moto's own walk decides)."""
    known = _MEMBERS.get(id(shape))
    if known is None or known[0] is not shape:
        members = shape.members
        names = {m.serialization.get("name", name): (i, name, m) for i, (name, m) in enumerate(members.items())}
        known = _MEMBERS[id(shape)] = (shape, names if len(names) == len(members) else None)
    return known[1]


def _fast_json_requests() -> bool:
    from moto.core.parse import BaseJSONParser

    def make(original):
        def _parse_structure(self, shape, value):
            """moto's: a request's JSON object as `shape`'s members, in the shape's order, each parsed
            by its own shape, absent and null ones left out. moto looks every member of the shape up
            in the object: a usage record's 19 attributes are 19 AttributeValues of ten members each
            (S, N, B, SS, ...), one of them there. Here the object's own keys are looked up in the
            shape: 3.5 -> 1.3 us an AttributeValue."""
            if type(value) is not dict or shape.is_document_type:
                return original(self, shape, value)
            names = _members_by_json_name(shape)
            if names is None:
                return original(self, shape, value)
            parsed = self.MAP_TYPE()
            if len(value) == 1:   # an AttributeValue, mostly: no order to restore
                for key, raw in value.items():
                    found = names.get(key)
                    if found is not None and raw is not None:
                        parsed[found[1]] = self._parse_shape(found[2], raw)
                return parsed
            for _, key in sorted((names[k][0], k) for k, raw in value.items() if raw is not None and k in names):
                _, name, member = names[key]
                parsed[name] = self._parse_shape(member, value[key])
            return parsed
        return _parse_structure

    return _swap(BaseJSONParser, "_parse_structure", "raw_value = value.get(json_name)", make)


def _untracked_new(cls, *args, **kwargs):
    """object's __new__: the instance is not added to the class's `instances_tracked`."""
    return object.__new__(cls)


_untracked_new.mk1 = True


def _untracked_messages() -> bool:
    from moto.core.common_models import BaseModel
    from moto.logs.models import LogEvent
    from moto.sqs.models import Message

    if "instances_tracked.append" not in inspect.getsource(BaseModel.__new__):
        return False
    ok = True
    for cls in (Message, LogEvent):
        own = cls.__dict__.get("__new__")
        if getattr(own, "__func__", None) is _untracked_new:
            continue
        if own is not None:   # a __new__ of its own in a later moto: leave it
            ok = False
            continue
        cls.__new__ = staticmethod(_untracked_new)
        cls.instances_tracked = []
    return ok


def _keep_alive() -> bool:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    def make(original):
        def run_wsgi(self) -> None:
            """One request, its connection kept open for the next (HTTP/1.1 keep-alive). Werkzeug
            closes every connection because http.server cannot drain a body the app left unread
            before the next request line; here the body is read whole, by its Content-Length,
            before the app runs. A chunked request body still closes (werkzeug's own path)."""
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return original(self)   # werkzeug's own handling (and its close)
            if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            environ = self.environ = self.make_environ()
            environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
            started: list = []

            def start_response(status, headers, exc_info=None):
                started[:] = [status, headers]
                return chunks.append

            chunks: list[bytes] = []
            try:
                result = self.server.app(environ, start_response)
                try:
                    chunks.extend(result)
                finally:
                    if hasattr(result, "close"):
                        result.close()
            except Exception:
                log.exception("moto failed on %s %s", self.command, self.path)
                started.clear()
            if not started:   # the app raised, or never started its answer
                self.close_connection = True
                started[:] = ["500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")]]
                chunks = [b"Internal Server Error"]
            _send_answer(self, *started, b"".join(chunks))
        return run_wsgi

    MotoRequestHandler.disable_nagle_algorithm = True   # a kept connection's next small write must not wait
    return _swap(MotoRequestHandler, "run_wsgi", "Always close the connection", make)


PATCHES = {"sqs-retention-check": _fix_retention_check, "sqs-clock": _fast_sqs_clock,
           "service-list": _cache_module_list, "response-methods": _cache_method_names,
           "dynamodb-item-size": _linear_item_size_check, "dynamodb-atomic-writes": _atomic_dynamodb_writes,
           "keep-alive": _keep_alive, "sqs-dedup-flag": _sqs_dedup_flag,
           "untracked-messages": _untracked_messages, "sqs-delete-one-pass": _sqs_delete_one_pass,
           "sqs-receive": _sqs_receive, "json-results": _fast_json_results,
           "json-requests": _fast_json_requests,
           "sqs-receipt-handles": _sqs_receipt_handles, **moto_lambda.PATCHES}


def apply() -> dict[str, bool]:
    """Apply what still fits the installed moto; {patch: applied}."""
    applied = {}
    for name, patch in PATCHES.items():
        try:
            applied[name] = patch()
        except Exception as e:   # a moto that moved on: run it unpatched
            log.warning("moto patch %s not applied: %s", name, e)
            applied[name] = False
    return applied


def _base_url(argv: list[str]) -> str:
    """http://HOST:PORT of this server, from moto_server's own -H/-p flags."""
    host, port = "127.0.0.1", "5000"
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-H", "--host"):
            host = argv[i + 1]
        elif arg in ("-p", "--port"):
            port = argv[i + 1]
    return f"http://{host}:{port}"


def _state_journal():
    """MK1_HOME/aws-state.jsonl, unless MK1_AWS_PERSIST is off or no MK1_HOME is given (a test's
    throwaway server)."""
    import os
    from pathlib import Path
    if not os.environ.get("MK1_HOME"):
        return None
    from my_mk1_homework import settings
    s = settings.load()
    if not s.MK1_AWS_PERSIST:
        return None
    from infra import names
    from infra.moto_state import StateJournal
    return StateJournal(Path(s.home) / "aws-state.jsonl", f"/{names.CODE_BUCKET}/{names.PAYLOAD_PREFIX}")


def _gate():
    """MK1_HOME/credentials (the operator's key is there), unless MK1_AWS_AUTH is off or no MK1_HOME
    is given (a test's throwaway server)."""
    import os
    if not os.environ.get("MK1_HOME"):
        return None
    from my_mk1_homework import settings
    s = settings.load()
    return s.credentials_file if s.MK1_AWS_AUTH else None


def _quiet_access_log() -> None:
    """werkzeug writes a line to moto.log for every request it serves. The dispatcher reads the
    control plane every second, so an idle mk1 wrote ~8 lines a second, ~70 MB a day into a file
    nothing rotates, and each line cost moto ~6% of its CPU under load. Those lines are kept at
    MK1_LOG_LEVEL=DEBUG; warnings and errors (moto's tracebacks, mk1's own lines) always are."""
    from my_mk1_homework import settings
    if settings.load().MK1_LOG_LEVEL.upper() != "DEBUG":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    _quiet_access_log()
    moto_lambda.set_base_url(_base_url(sys.argv[1:] if argv is None else argv))
    moto_lambda.STATE = _state_journal()
    moto_lambda.GATE = _gate()
    applied = apply()
    skipped = [n for n, ok in applied.items() if not ok]
    if skipped:
        print(f"mk1: moto runs without these speed-ups (its code changed): {', '.join(skipped)}",
              file=sys.stderr, flush=True)
    from moto.server import main as moto_main
    moto_main(argv)


if __name__ == "__main__":
    main()
