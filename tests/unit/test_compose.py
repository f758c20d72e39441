"""docker-compose.localstack.yml: valid, pinned to a token-free LocalStack tag, loopback-only ports."""
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.localstack.yml"


def test_compose_structure():
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert set(services) == {"localstack", "dispatcher", "ui"}
    image = services["localstack"]["image"]
    repo, tag = image.split(":")
    assert repo == "localstack/localstack" and tag != "latest"
    major, minor, *_ = (int(x) for x in tag.split("."))
    assert (major, minor) <= (4, 14), "tags after 4.14.0 need an auth token"
    for svc in services.values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    env = dict(e.split("=", 1) for e in services["dispatcher"]["environment"])
    assert env["AWS_ENDPOINT_URL"].endswith(":4566") and env["MK1_EMBEDDED_AWS"] == "never"
    assert "chalicelib.edge.server" in " ".join(services["dispatcher"]["command"])
    assert "ui/app.py" in services["ui"]["command"]


def test_compose_config_validates_where_a_compose_tool_exists():
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) is None:
            continue
        r = subprocess.run([*argv, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=ROOT)
        if r.returncode == 0:
            return
        if "is not a docker command" in r.stderr or "unknown" in r.stderr.lower():
            continue
        raise AssertionError(r.stderr)
