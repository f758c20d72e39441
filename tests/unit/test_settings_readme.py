"""Every setting is declared once; the README's configuration table lists each of them."""
import re
from pathlib import Path

from my_mk1_homework import settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_setting():
    text = README.read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", text, re.M))
    assert documented == set(settings.SETTINGS), (set(settings.SETTINGS) - documented, documented - set(settings.SETTINGS))


def test_load_reads_environment_each_time():
    s = settings.load({"MK1_DISPATCHER_PORT": "9123", "MK1_KEEPALIVE_MS": "0"})
    assert s.MK1_DISPATCHER_PORT == 9123 and s.MK1_KEEPALIVE_MS == 0
    assert s.dispatcher_url == "http://127.0.0.1:9123"
    assert settings.load({}).MK1_DISPATCHER_PORT == 8000
    assert settings.load({"AWS_ENDPOINT_URL": "http://localstack:4566"}).embedded_aws is False
    assert settings.load({}).embedded_aws is True
