"""LocalStack on this host, as the AWS endpoint of mk1's LocalStack test mode (`make test-localstack`).

    python -m infra.localstack install      # its own virtualenv under MK1_HOME/localstack-venv
    python -m infra.localstack run --port 4599

The version is the one docker-compose.localstack.yml pins, so the CI job and the compose file run
the same LocalStack. It runs on the host (no Docker): localstack-core needs Python >= 3.12 (found
through pyenv or on PATH), three pins its 4.x releases need against today's packages (cbor2 moved
its decoder in 5.7; pyOpenSSL 25 dropped X509.add_extensions; cryptography as pyOpenSSL 24 needs),
and mk1's LocalStack plugin (infra/localstack_plugin/): DynamoDB on LocalStack's bundled moto (its
own provider downloads DynamoDB Local and a JDK at first use) and a Lambda executor that prepares
nothing (mk1 runs the functions; LocalStack's Docker executor would mark each one Failed without a
Docker socket and its runtime download, and a Failed function refuses every update).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.localstack.yml"
PLUGIN = ROOT / "infra" / "localstack_plugin"
PINS = ("cbor2<5.7", "pyopenssl<25", "cryptography<45")
SERVICES = "iam,sts,lambda,sqs,dynamodb,logs,secretsmanager,s3"


def pinned_version() -> str:
    """localstack/localstack:X.Y.Z from the compose file."""
    m = re.search(r"image:\s*localstack/localstack:([0-9.]+)", COMPOSE.read_text())
    if not m:
        raise RuntimeError(f"{COMPOSE} pins no localstack/localstack:X.Y.Z image")
    return m.group(1)


def python312() -> str:
    """A Python >= 3.12 for LocalStack: pyenv's newest, else python3.13/3.12 on PATH."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted((p for p in pyenv.glob("3.1[2-9]*") if (p / "bin" / "python3").exists()),
                   key=lambda p: tuple(int(x) for x in re.findall(r"\d+", p.name)[:3]), reverse=True)
    if found:
        return str(found[0] / "bin" / "python3")
    for name in ("python3.13", "python3.12"):
        if shutil.which(name):
            return shutil.which(name)
    raise RuntimeError("LocalStack needs Python 3.12 or newer: install one (e.g. `pyenv install 3.13`)")


def venv_dir(home: Path) -> Path:
    return home / "localstack-venv"


def install(home: Path, progress=print) -> Path:
    """The virtualenv with the pinned LocalStack, made once (a stamp names what it holds)."""
    venv, version = venv_dir(home), pinned_version()
    stamp = venv / f".mk1-localstack-{version}"
    plugin_stamp = max(p.stat().st_mtime for p in PLUGIN.rglob("*") if p.is_file())
    if stamp.exists() and float(stamp.read_text() or 0) >= plugin_stamp:
        return venv
    python = venv / "bin" / "python"
    if not python.exists():
        progress(f"making {venv} with {python312()} ...")
        subprocess.run([python312(), "-m", "venv", str(venv)], check=True)
    progress(f"installing localstack-core {version} into {venv} (about a minute) ...")
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory() as tmp:   # pip builds in the source tree: build a copy
        plugin = shutil.copytree(PLUGIN, Path(tmp) / "plugin")
        for args in ([f"localstack-core[runtime]=={version}", *PINS], [str(plugin)]):
            done = subprocess.run([*pip, *args], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"pip install {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    stamp.write_text(str(plugin_stamp))
    return venv


# LocalStack's settings for mk1, the same in the CI job (host mode) and in docker-compose.localstack.yml
# (tests/unit/test_localstack_config.py holds them equal): the services mk1 uses, mk1's plugin's DynamoDB
# and Lambda executor, no telemetry, no certificate download.
SETTINGS = {"SERVICES": SERVICES, "PROVIDER_OVERRIDE_DYNAMODB": "moto", "LAMBDA_RUNTIME_EXECUTOR": "mk1",
            "DISABLE_EVENTS": "1", "SKIP_SSL_CERT_DOWNLOAD": "1"}


def environment(port: int, data: Path) -> dict[str, str]:
    """SETTINGS, and for the host: loopback only, through hypercorn (its default server binds every
    interface), no DNS server, its state and caches under `data`."""
    # LOCALSTACK_HOST: the host in the URLs it answers (queue URLs, code locations); its default,
    # localhost.localstack.cloud, needs a DNS lookup that a machine without internet cannot make.
    return {**os.environ, **SETTINGS, "GATEWAY_LISTEN": f"127.0.0.1:{port}", "GATEWAY_SERVER": "hypercorn",
            "LOCALSTACK_HOST": f"127.0.0.1:{port}", "DNS_ADDRESS": "0",
            "LOCALSTACK_VOLUME_DIR": str(data / "volume"), "FILESYSTEM_ROOT": str(data / "fs"),
            # plux caches its plugin index per interpreter: one of our own, made after the plugin
            "XDG_CACHE_HOME": str(data / "cache")}


def start(home: Path, port: int, log_path: Path, data: Path | None = None) -> subprocess.Popen:
    """LocalStack from the virtualenv under `home`, its state and caches under `data`."""
    venv = install(home)
    data = data or home / "localstack-data"
    data.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([str(venv / "bin" / "python"), "-m", "localstack.runtime.main"],
                            env=environment(port, data), stdout=log_path.open("ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def main(argv: list[str] | None = None) -> int:
    from my_mk1_homework import settings
    ap = argparse.ArgumentParser(prog="python -m infra.localstack")
    ap.add_argument("action", choices=["install", "run"])
    ap.add_argument("--port", type=int, default=4566)
    args = ap.parse_args(argv)
    home = settings.load().home
    if args.action == "install":
        print(install(home))
        return 0
    proc = start(home, args.port, home / "localstack.log")
    print(f"LocalStack {pinned_version()} on http://127.0.0.1:{args.port} (pid {proc.pid}, log {home / 'localstack.log'})")
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
