"""The pool view lists the SQS event source mappings mk1 polls (issue: the UI shows each mapping's
state, batches in flight and backlog)."""
from streamlit.testing.v1 import AppTest


def _page():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path.cwd()))
    from ui import views
    views.pool({"functions": {}, "queues": {}, "mappings": [
        {"uuid": "0123456789abcdef", "source": "arn:aws:sqs:us-east-1:123456789012:prompts",
         "function": "RuntimeAlpha", "state": "Enabled", "in_flight_batches": 2, "backlog": 17, "batches": 5,
         "deleted": 40}]})


def test_the_pool_view_shows_each_mapping():
    at = AppTest.from_function(_page, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    assert any("Event source mappings" in str(m.value) for m in at.markdown)
    frames = [d.value for d in at.dataframe]
    rows = [r for f in frames if "mapping" in f.columns for r in f.to_dict("records")]
    assert rows == [{"mapping": "01234567", "queue": "prompts", "function": "RuntimeAlpha", "state": "Enabled",
                     "batches running": 2, "backlog": 17, "batches done": 5, "messages deleted": 40}]
