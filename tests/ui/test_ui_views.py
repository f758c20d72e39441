"""Parts of the page drawn from given data (Streamlit's AppTest runs them as a script)."""
from streamlit.testing.v1 import AppTest


def _batch_in_flight():
    import streamlit as st
    from ui import data, views
    calls = data.plan(2, "hello", 1, "hi")
    got = [data.Answer(0, "RuntimeAlpha", "hello", 0.0, status=data.OK, request_id="r-0", text="[alpha] hello",
                       duration_ms=12.0, wait_ms=0.0, container="RuntimeAlpha-0001", finished=1.0, cold=False)]
    views.answers(st.empty(), got, len(calls), calls)


def test_calls_still_out_have_a_row_each_while_the_batch_runs():
    at = AppTest.from_function(_batch_in_flight).run(timeout=30)
    assert not at.exception
    assert any("1 of 3 answers" in m.value and "2 still waiting" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table["status"]) == ["ok", "⏳ waiting", "⏳ waiting"]
    assert list(table["runtime"]) == ["RuntimeAlpha", "RuntimeBeta", "RuntimeAlpha"]
