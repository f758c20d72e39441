"""The two runtimes and their Lambda handlers, imported as Lambda would (fresh module per function)."""
import importlib
import sys
from pathlib import Path

import pytest

FUNCS = Path(__file__).resolve().parents[2] / "functions"


def load_handler(name, monkeypatch, **env):
    for k, v in {"LOAD_SECONDS": "0", "GENERATE_SECONDS": "0", **env}.items():
        monkeypatch.setenv(k, v)
    for mod in ("handler", "runtime_base", "runtime_alpha", "runtime_beta"):
        sys.modules.pop(mod, None)
    monkeypatch.syspath_prepend(str(FUNCS / "common"))
    monkeypatch.syspath_prepend(str(FUNCS / name))
    return importlib.import_module("handler")


@pytest.mark.parametrize("name,expected", [("alpha", "[alpha] world hello"),
                                           ("beta", "[beta] HELLO WORLD (2 words)")])
def test_handler_answers_with_response(name, expected, monkeypatch):
    h = load_handler(name, monkeypatch)
    out = h.handler({"prompt": "hello world"}, None)
    assert out["response"] == expected and out["runtime"].startswith("Runtime")


@pytest.mark.parametrize("event,msg", [({}, 'no "prompt"'), ({"prompt": 3}, "must be a string"),
                                       ([1], "JSON object"), ({"prompt": "x" * 100_001}, "limit")])
def test_bad_events_raise_clear_errors(event, msg, monkeypatch):
    h = load_handler("alpha", monkeypatch)
    with pytest.raises(ValueError, match=msg):
        h.handler(event, None)


def test_load_and_generate_sleep_from_environment(monkeypatch):
    monkeypatch.syspath_prepend(str(FUNCS / "common"))
    monkeypatch.syspath_prepend(str(FUNCS / "beta"))
    monkeypatch.setenv("LOAD_SECONDS", "2.5")
    monkeypatch.setenv("GENERATE_SECONDS", "0.25")
    sys.modules.pop("runtime_beta", None)
    from runtime_beta import RuntimeBeta
    slept = []
    rt = RuntimeBeta(sleep=slept.append)
    with pytest.raises(RuntimeError, match="before load"):
        rt.generate("x")
    rt.load()
    rt.generate("x")
    assert slept == [2.5, 0.25]
    monkeypatch.delenv("LOAD_SECONDS")
    assert RuntimeBeta(sleep=slept.append).load_seconds == 3.0   # the default


def test_an_sqs_batch_is_one_event_per_message_with_a_partial_batch_response():
    """Triggered by an SQS mapping, each body is an event; a bad one is named in batchItemFailures
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html)."""
    import importlib
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "functions"
    for p in (root / "common", root / "alpha"):
        sys.path.insert(0, str(p))
    try:
        base = importlib.import_module("runtime_base")
        alpha = importlib.import_module("runtime_alpha")
        rt = alpha.RuntimeAlpha(sleep=lambda s: None)
        rt.load()
        rec = lambda mid, body: {"messageId": mid, "body": body, "eventSource": "aws:sqs"}  # noqa: E731
        out = base.lambda_handler(rt)({"Records": [rec("1", '{"prompt": "hello world"}'), rec("2", "not json"),
                                                   rec("3", '{"no": "prompt"}')]}, None)
        assert out["batchItemFailures"] == [{"itemIdentifier": "2"}, {"itemIdentifier": "3"}]
        assert out["responses"] == [{"messageId": "1", "response": "[alpha] world hello"}]
    finally:
        for p in (root / "common", root / "alpha"):
            sys.path.remove(str(p))
