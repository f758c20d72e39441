"""The Streamlit UI, headless: streamlit.testing.v1.AppTest runs ui/app.py in-process.

The app reads its settings (MK1_HOME, MK1_ENDPOINT) on every run, so each test points
them at the system it wants before running the script.
"""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from helpers import ROOT, free_port, wait_until

APP = str(ROOT / "ui" / "app.py")


def app(**widgets) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def invoke(at: AppTest, user: str, n_alpha: int, n_beta: int, prompt_alpha: str = "hello world",
           prompt_beta: str = "quick brown fox") -> AppTest:
    at.selectbox(key="user").select(user)
    at.number_input(key="n_alpha").set_value(n_alpha)
    at.number_input(key="n_beta").set_value(n_beta)
    at.text_input(key="p_alpha").input(prompt_alpha)
    at.text_input(key="p_beta").input(prompt_beta)
    at.button(key="invoke").click().run()
    assert not at.exception, at.exception
    return at


def answers(at: AppTest):
    """The results table of the batch (the first dataframe after the controls)."""
    for df in at.dataframe:
        if "response" in df.value.columns:
            return df.value
    raise AssertionError("no results table on the page")


@pytest.fixture
def down(monkeypatch, tmp_path):
    """Settings that point at a dispatcher that is not running."""
    monkeypatch.setenv("MK1_HOME", str(tmp_path))
    monkeypatch.setenv("MK1_ENDPOINT", f"http://127.0.0.1:{free_port()}")


@pytest.fixture
def up(monkeypatch, system):
    monkeypatch.setenv("MK1_HOME", str(system.home))
    monkeypatch.setenv("MK1_ENDPOINT", system.url)
    return system


def test_controls(down):
    at = app()
    user = at.selectbox(key="user")
    assert user.label == "User" and list(user.options) == ["user1", "user2", "admin"]
    for key, runtime in (("n_alpha", "RuntimeAlpha"), ("n_beta", "RuntimeBeta")):
        n = at.number_input(key=key)
        assert n.label == f"{runtime} invocations" and n.min == 0 and n.max == 20 and n.step == 1
        assert at.text_input(key=f"p_{key[2:]}").label == f"{runtime} prompt"
    assert at.button(key="invoke").label == "Invoke runtimes"
    at.number_input(key="n_alpha").set_value(7).run()
    assert at.number_input(key="n_alpha").value == 7


def test_dispatcher_down_says_how_to_start_it(down):
    at = app()
    msg = texts(at.error)
    assert "dispatcher is not running" in msg and "make up" in msg
    assert not at.exception
    # invoking anyway: one clear message, no traceback
    invoke(at, "admin", 1, 1)
    assert "make up" in texts(at.error)
    assert set(answers(at)["status"]) == {"unreachable"}


def test_zero_invocations_asks_for_some(up):
    at = invoke(app(), "admin", 0, 0)
    assert "at least one invocation" in texts(at.info)


def test_successful_batch(up):
    at = invoke(app(), "admin", 2, 2, "hello world", "quick brown fox")
    assert not at.error, texts(at.error)
    df = answers(at)
    assert len(df) == 4
    assert set(df["status"]) == {"ok"}
    assert sorted(df["runtime"]) == ["RuntimeAlpha"] * 2 + ["RuntimeBeta"] * 2
    assert set(df[df.runtime == "RuntimeAlpha"]["response"]) == {"[alpha] world hello"}
    assert all(df["duration ms"] > 0)
    assert all(v == "warm" or float(v) > 0 for v in df["cold start ms"])   # warm, or its init time
    md = texts(at.markdown)
    assert "4 of 4 answers" in md
    assert "max concurrent per runtime: RuntimeAlpha" in md and "RuntimeBeta" in md
    assert "client-side" not in texts(at.caption)       # the timeline came from the usage records
    # the pool, the usage records and the billing report are on the page
    frames = [df.value for df in at.dataframe]
    assert any("cold starts" in f.columns for f in frames)
    assert any("container" in f.columns and "state" in f.columns for f in frames)
    assert any("billed_ms" in f.columns and len(f) >= 4 for f in frames)
    assert any("estimated cost (USD)" in f.columns or "estimated_cost_usd" in f.columns for f in frames)
    # a rerun (any widget) keeps the batch on the page; admin filters the usage by user and function
    assert list(at.selectbox(key="usage_user_admin").options) == ["all users", "user1", "user2", "admin"]
    at.selectbox(key="usage_user_admin").select("admin")
    at.selectbox(key="usage_function").select("RuntimeBeta").run()
    assert not at.exception and not at.error, texts(at.error)
    assert len(answers(at)) == 4
    usage = [f.value for f in at.dataframe if "billed_ms" in f.value.columns]
    assert usage and set(usage[0]["function"]) == {"RuntimeBeta"} and set(usage[0]["user"]) == {"admin"}


def test_permission_denied_is_a_clear_message(up):
    at = invoke(app(), "user1", 1, 1)
    errors = texts(at.error)
    assert "user1 is not allowed to invoke RuntimeBeta" in errors
    assert "Traceback" not in errors and "RuntimeAlpha" not in errors.split("RuntimeBeta")[0].split("invoke")[0]
    df = answers(at)
    assert dict(zip(df["runtime"], df["status"])) == {"RuntimeAlpha": "ok", "RuntimeBeta": "denied"}
    # a user sees only their own usage
    users = {u for f in at.dataframe for u in (f.value["user"] if "billed_ms" in f.value.columns else [])}
    assert users == {"user1"}


def _reserved(system, function: str) -> int | None:
    return system.status(timeout=5)["functions"][function]["reserved_concurrency"]


def _set_reserved(system, function: str, n: int) -> None:
    """Change the reserved concurrency in the control plane; wait until the dispatcher uses it."""
    system.aws("lambda").put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=n)
    wait_until(lambda: _reserved(system, function), lambda got: got == n, timeout=15,
               what=f"the dispatcher to use reserved concurrency {n} for {function}")


def test_throttled_is_a_warning(up):
    """Reserved concurrency 0 makes every call a 429 (restored afterwards for the other tests)."""
    before = _reserved(up, "RuntimeBeta")
    _set_reserved(up, "RuntimeBeta", 0)
    try:
        at = invoke(app(), "admin", 1, 2)
    finally:
        _set_reserved(up, "RuntimeBeta", before)
    df = answers(at)
    assert dict(df.groupby("runtime")["status"].agg(lambda s: ",".join(sorted(set(s))))) == {
        "RuntimeAlpha": "ok", "RuntimeBeta": "throttled"}
    warning = texts(at.warning)
    assert "RuntimeBeta is throttled" in warning and "429" in warning and "2 calls" in warning
    assert not at.error, texts(at.error)


def test_served_beyond_loopback_it_asks_for_the_callers_keys(up, system):
    """No drop-down of this machine's profiles when other machines can reach the page: the caller's
    own keys, and the dispatcher decides what they may do (docs/SECURITY.md's actor table)."""
    from streamlit import config
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")   # an option only: no server is started here
    try:
        at = app()
        assert not [s for s in at.selectbox if s.key == "user"]
        akid, secret = system.keys("user1")
        at.text_input(key="akid").input(akid)
        at.text_input(key="secret").input(secret)
        at.number_input(key="n_alpha").set_value(1)
        at.number_input(key="n_beta").set_value(1)
        at.button(key="invoke").click().run()
        assert not at.exception, at.exception
        table = answers(at)
        by_runtime = dict(zip(table["runtime"], table["status"]))
        assert by_runtime["RuntimeAlpha"] == "ok" and by_runtime["RuntimeBeta"] != "ok", by_runtime
    finally:
        config.set_option("server.address", before)
