"""`make package-aws`: the functions' deployment zips are complete and self-contained."""
import io
import json
import zipfile
from pathlib import Path

from infra.package_aws import function_zips

ROOT = Path(__file__).resolve().parents[2]


def test_function_zips_hold_handler_runtime_and_shared_base(tmp_path):
    zips = {p.stem: p for p in function_zips(tmp_path)}
    assert set(zips) == {"RuntimeAlpha", "RuntimeBeta"}
    names = set(zipfile.ZipFile(io.BytesIO(zips["RuntimeAlpha"].read_bytes())).namelist())
    assert {"handler.py", "runtime_alpha.py", "runtime_base.py"} <= names
    assert "runtime_beta.py" not in names


def test_chalice_project_config():
    cfg = json.loads((ROOT / "dispatcher_app" / ".chalice" / "config.json").read_text())
    assert cfg["app_name"] == "mk1-dispatcher" and cfg["environment_variables"]["MK1_EXECUTOR"] == "lambda"
