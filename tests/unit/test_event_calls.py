"""An Event call past MaximumEventAgeInSeconds is not run: a record says so, its OnFailure
destination gets AWS's record with condition EventAgeExceeded, and its message is deleted
(https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-configuring.html)."""
import base64
from types import SimpleNamespace

from chalicelib.admit.waiting import Slot
from chalicelib.clock import FakeClock
from chalicelib.invoke_event import EventCalls
from chalicelib.model import AsyncConfig, FunctionConfig

CFG = FunctionConfig("F", "arn:aws:lambda:us-east-1:123456789012:function:F", "sha", "app.handler", "python3.11",
                     3, 128, {}, 3, events=AsyncConfig(max_age_s=60, on_failure="arn:aws:sqs:us-east-1:1:q"))


def _calls(clock):
    seen = SimpleNamespace(delivered=[], unrun=[], executed=[], deleted=[], results=[], released=[])
    parts = SimpleNamespace(journal=None,
        clock=clock, s3=None,
        registry=SimpleNamespace(version=lambda name, v: CFG),
        admission=lambda name: SimpleNamespace(queue=SimpleNamespace(delete=seen.deleted.append)),
        results=SimpleNamespace(update=lambda *a: seen.results.append(a)),
        destinations=SimpleNamespace(deliver=lambda *a: seen.delivered.append(a),
                                     dead_letter=lambda *a: None))
    invoker = SimpleNamespace(p=parts, execute=lambda *a: seen.executed.append(a),
                              record_unrun=lambda *a, written=None: (seen.unrun.append(a),
                                                                     written and written.set()))   # as once in the table
    return EventCalls(invoker), seen


def test_an_event_past_its_age_is_not_run_and_goes_to_on_failure():
    clock = FakeClock()
    calls, seen = _calls(clock)
    body = {"request_id": "r1", "function": "F", "user": "u", "attempt": 0, "accepted_at": clock.time() - 61,
            "payload": {"b64": base64.b64encode(b'{"k": 1}').decode()}, "version": "$LATEST"}
    slot = Slot(seen.released.append, 0.0)
    calls.run(body, "receipt-1", slot)
    assert seen.executed == [] and seen.released == [slot] and seen.deleted == ["receipt-1"]
    assert [u[4] for u in seen.unrun] == ["expired"]
    [(target, record, success, config, user)] = seen.delivered
    assert target == "arn:aws:sqs:us-east-1:1:q" and success is False and user == "u"
    assert record["requestContext"] == {"requestId": "r1", "functionArn": f"{CFG.arn}:$LATEST",
                                        "condition": "EventAgeExceeded", "approximateInvokeCount": 0}
    assert record["requestPayload"] == {"k": 1} and "responseContext" not in record
