"""MK1_EXECUTOR=lambda: mk1 keeps auth, queueing and usage; a second mk1 acts as the Lambda API."""
import threading

import pytest

from helpers import wait_until
from my_mk1_homework import PermissionDenied


def test_calls_run_through_another_lambda_api(make_system):
    remote = make_system(MK1_MAX_QUEUE_DEPTH="0", MK1_ALPHA_GENERATE_SECONDS="0.3")
    remote.aws("lambda").put_function_concurrency(FunctionName="RuntimeAlpha", ReservedConcurrentExecutions=1)
    front = make_system(MK1_EXECUTOR="lambda", MK1_EXECUTOR_ENDPOINT=remote.url,
                        MK1_EXECUTOR_CREDENTIALS=f"{remote.home / 'credentials'}#admin")
    alpha = front.function("RuntimeAlpha", "user1")
    r = alpha.invoke({"prompt": "through the API"})
    assert r.payload["response"] == "[alpha] API the through" and r.container.startswith("RuntimeAlpha-")
    with pytest.raises(PermissionDenied):              # authorization stays in the front mk1
        front.function("RuntimeAlpha", "user2").generate("x")
    # the remote runs one at a time and refuses the rest (429): the front keeps them waiting
    wait_until(lambda: remote.status()["functions"]["RuntimeAlpha"]["reserved_concurrency"], lambda n: n == 1,
               what="the remote to use reserved concurrency 1")
    out, lock = [], threading.Lock()

    def one(i):
        res = alpha.invoke({"prompt": f"n {i}"})
        with lock:
            out.append(res)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert len(out) == 3 and all(x.function_error is None for x in out)
    recs = front.records_for([r.request_id] + [x.request_id for x in out])
    assert {x["backend"] for x in recs} == {"lambda"} and all(x["user"] == "user1" for x in recs if x["status"] == "success")
    bad = alpha.invoke({"no": "prompt"})
    assert bad.function_error == "Unhandled" and bad.payload["errorType"] == "InvalidEvent"
