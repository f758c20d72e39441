"""The UI started by hand (`python -m streamlit run ui/app.py` in the project root) binds loopback and
sends no usage statistics: Streamlit reads .streamlit/config.toml from the working directory."""
import tomllib
from pathlib import Path

from my_mk1_homework import settings

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def test_a_hand_started_ui_binds_loopback_and_sends_no_statistics():
    cfg = tomllib.loads(CONFIG.read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["server"]["port"] == settings.SETTINGS["MK1_UI_PORT"].default
    assert cfg["browser"]["gatherUsageStats"] is False
