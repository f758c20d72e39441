"""The journals behind durable state: accepted Event calls (admit/journal.py), their settled
results (record/results.py) and the embedded AWS's control-plane changes (infra/moto_state.py)."""
import base64
import json
import threading

from chalicelib.admit.journal import CallJournal
from chalicelib.jsonl import JsonLines
from chalicelib.record.results import KEPT_S, ResultLog
from infra.moto_state import journaled


def _body(rid: str, attempt: int = 0) -> dict:
    return {"request_id": rid, "function": "f", "attempt": attempt, "accepted_at": 1.0, "payload": {"b64": ""}}


def test_open_calls_survive_a_reload_and_ended_ones_do_not(tmp_path):
    path = tmp_path / "calls.jsonl"
    j = CallJournal(path)
    j.accepted(_body("a"), b'{"x": 1}')
    j.accepted(_body("b"), b"{}")
    j.ran("a", 0)
    j.accepted(_body("a", 1), b'{"x": 1}')     # a's retry queued
    j.ended("b")
    j.close()
    with path.open("ab") as f:
        f.write(b'{"id": "c", "accep')           # a torn line from a crash
    again = CallJournal(path)
    calls = again.open_calls()
    assert set(calls) == {"a"} and calls["a"].body["attempt"] == 1 and calls["a"].payload == b'{"x": 1}'
    assert again.already_ran("a", 0) and not again.already_ran("a", 1)
    assert again.already_ran("b", 0)             # ended: a late redelivery is dropped
    assert "accep\n" not in path.read_text()     # compacted at load


def test_only_control_plane_changes_are_journaled():
    h = {"content-type": "application/x-amz-json-1.0"}
    assert journaled("POST", "/2015-03-31/functions", "", {}, b"{}", "")
    assert journaled("PUT", "/2017-10-31/functions/f/concurrency", "", {}, b"{}", "")
    assert not journaled("GET", "/2015-03-31/functions/", "", {}, b"", "")
    assert not journaled("POST", "/2015-03-31/functions/f/invocations", "", {}, b"{}", "")
    assert not journaled("POST", "/", "", {**h, "x-amz-target": "AmazonSQS.SendMessageBatch"}, b"{}", "")
    assert not journaled("POST", "/", "", {**h, "x-amz-target": "DynamoDB_20120810.PutItem"}, b"{}", "")
    assert journaled("POST", "/", "", {**h, "x-amz-target": "DynamoDB_20120810.CreateTable"}, b"{}", "")
    assert journaled("POST", "/", "", {**h, "x-amz-target": "secretsmanager.PutSecretValue"}, b"{}", "")
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert journaled("POST", "/", "", form, b"Action=PutUserPolicy&UserName=u", "")
    assert not journaled("POST", "/", "", form, b"Action=ListUsers", "")
    assert not journaled("PUT", "/mk1-code/calls/r1", "", {}, b"x", "/mk1-code/calls/")
    assert journaled("PUT", "/mk1-code/functions/f.zip", "", {}, b"x", "/mk1-code/calls/")


def test_a_run_recorded_in_the_usage_log_is_not_run_again(tmp_path):
    """The dispatcher died after an attempt's usage record, before marking it: the record counts."""
    path, usage = tmp_path / "calls.jsonl", tmp_path / "usage.log"
    j = CallJournal(path, usage)
    j.accepted(_body("ok"), b"{}")
    j.accepted(_body("failed"), b"{}")
    j.accepted(_body("waiting"), b"{}")
    j.close()
    usage.write_text("\n".join(json.dumps({"request_id": rid, "invocation_type": "Event", "attempt": 0,
                                           "status": status})
                               for rid, status in (("ok", "success"), ("failed", "function_error"))) + "\n")
    again = CallJournal(path, usage)
    assert set(again.open_calls()) == {"failed", "waiting"}     # "ok" ended with its success
    assert again.already_ran("ok", 0) and again.already_ran("failed", 0)
    assert not again.already_ran("failed", 1) and not again.already_ran("waiting", 0)


def test_settled_results_come_back_the_last_per_call_within_a_day(tmp_path):
    path, now = tmp_path / "results.jsonl", 1_000_000.0
    log = ResultLog(path, clock=lambda: now)
    log.append({"request_id": "old", "status": "succeeded", "updated_at": now - KEPT_S - 1})
    log.append({"request_id": "a", "status": "failed", "updated_at": now - 10, "payload": "e30="})
    log.append({"request_id": "a", "status": "succeeded", "updated_at": now - 5, "payload": "e30="})
    log.append({"request_id": "b", "status": "expired", "updated_at": now - 1})
    with path.open("ab") as f:
        f.write(b'{"request_id": "c", "sta')      # a torn line from a crash
    kept = ResultLog(path, clock=lambda: now).load()
    assert {rid: r["status"] for rid, r in kept.items()} == {"a": "succeeded", "b": "expired"}
    assert len(path.read_bytes().splitlines()) == 2    # compacted at load


class _Table:
    """DynamoDB's GetItem/PutItem on one table, in memory; `lost()` is the endpoint restarting."""

    def __init__(self):
        self.items: dict[str, dict] = {}

    def put_item(self, TableName, Item):
        self.items[Item["request_id"]["S"]] = Item

    def get_item(self, TableName, Key):
        item = self.items.get(Key["request_id"]["S"])
        return {"Item": item} if item else {}

    def lost(self):
        self.items.clear()


def test_async_results_in_memory_stay_bounded_and_older_ones_are_still_answered(tmp_path):
    """A long run of Event calls: memory keeps the newest answers within its limit and those a day
    old leave it; the others are answered from DynamoDB, or from the log once the endpoint lost them."""
    from chalicelib.model import Outcome
    from chalicelib.record.results import Results
    now = [1_800_000_000.0]
    table = _Table()
    results = Results(table, s3=None, log_path=tmp_path / "async-results.jsonl", clock=lambda: now[0],
                      mem_payload_bytes=64 * 1024)
    answer = b"x" * 3000   # ~4 KB as base64: sixteen fit the limit
    for i in range(200):
        results.pending(f"r{i}", "F", "user1")
        results.update(f"r{i}", "succeeded", Outcome("success", answer + str(i).encode()), 1)
        now[0] += 1
    assert len(results) <= 17
    assert results.get("r199")["status"] == "succeeded"
    old = results.get("r3")                       # left memory: DynamoDB has it
    assert old["status"] == "succeeded" and base64.b64decode(old["payload"]).endswith(b"x3")
    table.lost()                                  # the endpoint restarted: the log has it
    again = results.get("r3")
    assert again["status"] == "succeeded" and base64.b64decode(again["payload"]).endswith(b"x3")
    assert results.get("never") is None
    now[0] += KEPT_S + 1                          # a day on: settled results leave memory
    results.pending("fresh", "F", "user1")
    assert len(results) == 1 and results.get("r199") is None


def test_the_call_journal_is_compacted_while_running_and_keeps_what_it_must(tmp_path):
    """A long run of Event calls (three lines each, the payload in one) grew the file, and the ended
    ids in memory, until the next start. Compacted as it runs: the open calls and the ids ended within
    a day stay, in the file and across a reload."""
    path, now = tmp_path / "calls.jsonl", [1_800_000_000.0]
    j = CallJournal(path, clock=lambda: now[0], compact_min_lines=20)
    j.accepted(_body("open"), b'{"keep": "me"}')
    for i in range(300):
        j.accepted(_body(f"c{i}"), b"{}")
        j.ran(f"c{i}", 0)
        j.ended(f"c{i}")
        now[0] += 1_000                              # ~86 calls end within any day
    lines = path.read_bytes().splitlines()
    assert len(lines) <= 3 * 88 + 20 < 900           # 900 were appended
    assert not j.already_ran("c0", 0) and j.already_ran("c299", 0)   # ended a day ago: forgotten
    assert set(j.open_calls()) == {"open"}
    j.accepted(_body("late"), b"{}")                  # appends after a compaction reach the new file
    j.close()
    again = CallJournal(path, clock=lambda: now[0])
    assert set(again.open_calls()) == {"open", "late"} and again.open_calls()["open"].payload == b'{"keep": "me"}'
    assert again.already_ran("c299", 0) and not again.already_ran("c100", 0)


def test_the_results_log_is_compacted_while_running(tmp_path):
    path, now = tmp_path / "results.jsonl", [1_800_000_000.0]
    log = ResultLog(path, clock=lambda: now[0], compact_min_lines=10)
    log.load()
    for i in range(100):                              # five calls, each settled twenty times
        log.append({"request_id": f"r{i % 5}", "status": "failed", "attempt": i, "updated_at": now[0]})
        now[0] += 1
    assert len(path.read_bytes().splitlines()) <= 5 + 10
    assert log.find("r4")["attempt"] == 99 and log.find("r0")["attempt"] == 95
    now[0] += KEPT_S                                  # a day on: those leave at the next compaction
    for i in range(10):
        log.append({"request_id": f"n{i}", "status": "succeeded", "updated_at": now[0]})
    assert log.find("r4") is None and len(path.read_bytes().splitlines()) <= 10
    assert ResultLog(path, clock=lambda: now[0]).load().keys() == {f"n{i}" for i in range(10)}


def _lines_of(path) -> list[dict]:
    return [json.loads(raw) for raw in path.read_bytes().splitlines()]


def test_a_rewrite_is_written_without_the_lock_and_keeps_the_lines_appended_meanwhile(tmp_path):
    """A rewrite while running (a day of ended ids: 200,000 lines took 1.5 s) is written with the
    owner's lock let go: appends meanwhile neither wait for it nor are lost. Until the swap the old
    file holds every line (a crash then loses nothing); after it, the new one holds the kept entries
    and the lines appended meanwhile, and appends go on to it."""
    path, lock = tmp_path / "j.jsonl", threading.Lock()
    lines = JsonLines(path, compact_min_lines=3, lock=lock)
    building, go_on = threading.Event(), threading.Event()

    def snapshot():   # taken under the lock, as of the line that made the rewrite due
        kept = [{"n": "kept"}]

        def build():
            building.set()
            assert go_on.wait(10)
            yield from kept
        return build

    dues = []
    for i in range(3):
        with lock:
            dues.append(lines.append({"n": i}, True, snapshot))
    assert dues[:2] == [None, None] and dues[2] is not None
    rewriting = threading.Thread(target=dues[2])   # the appending thread runs it, the lock let go
    rewriting.start()
    assert building.wait(10)
    for i in (3, 4):
        assert lock.acquire(timeout=5), "an append waited for the rewrite"
        try:
            assert lines.append({"n": i}, True, snapshot) is None   # one rewrite at a time
        finally:
            lock.release()
    assert _lines_of(path) == [{"n": i} for i in range(5)]        # the old file, whole
    go_on.set()
    rewriting.join(10)
    assert _lines_of(path) == [{"n": "kept"}, {"n": 3}, {"n": 4}]
    with lock:
        lines.append({"n": 5}, True, snapshot)
    assert _lines_of(path)[-1] == {"n": 5} and not path.with_suffix(".tmp").exists()


def test_a_rewrite_finishing_after_close_leaves_the_old_file(tmp_path):
    path, lock = tmp_path / "j.jsonl", threading.Lock()
    lines = JsonLines(path, compact_min_lines=1, lock=lock)
    with lock:
        due = lines.append({"n": 0}, True, lambda: lambda: [{"n": "kept"}])
        lines.close()
    due()
    assert _lines_of(path) == [{"n": 0}] and not path.with_suffix(".tmp").exists()


def test_the_call_journal_accepts_calls_while_its_rewrite_is_written(tmp_path):
    """The journal's own snapshot: a call accepted, and one ended, while the rewrite is written
    are in the rewritten file, and the journal reloads to the same open calls."""
    path, now = tmp_path / "calls.jsonl", [1_800_000_000.0]
    j = CallJournal(path, clock=lambda: now[0], compact_min_lines=5)
    for i in range(2):
        j.accepted(_body(f"c{i}"), b"{}")
        j.ran(f"c{i}", 0)
    building, go_on = threading.Event(), threading.Event()
    take = j._snapshot

    def slow_snapshot():
        build = take()

        def slowly():
            building.set()
            assert go_on.wait(10)
            yield from build()
        return slowly
    j._snapshot = slow_snapshot
    ending = threading.Thread(target=j.ended, args=("c0",))   # the fifth line: the rewrite is due
    ending.start()
    assert building.wait(10)
    j.accepted(_body("meanwhile"), b'{"x": 1}')
    j.ended("c1")
    go_on.set()
    ending.join(10)
    j.close()
    again = CallJournal(path, clock=lambda: now[0])
    assert set(again.open_calls()) == {"meanwhile"} and again.already_ran("c0", 0) and again.already_ran("c1", 0)
