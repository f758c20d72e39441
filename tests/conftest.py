import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "dispatcher_app", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from helpers import System  # noqa: E402


LOCALSTACK = os.environ.get("MK1_TEST_AWS") == "localstack"


def pytest_collection_modifyitems(config, items):
    """In LocalStack mode (`make test-localstack`) only the tests marked `localstack` run, less those
    marked `embedded` (the embedded AWS's own behaviour: its gate, journals and moto patches)."""
    if not LOCALSTACK:
        return
    def runs(item) -> bool:
        return bool(item.get_closest_marker("localstack")) and not item.get_closest_marker("embedded")
    config.hook.pytest_deselected(items=[i for i in items if not runs(i)])
    items[:] = [i for i in items if runs(i)]


@pytest.fixture(scope="session", autouse=True)
def localstack_endpoint(tmp_path_factory):
    """LocalStack mode: one host-mode LocalStack (the version docker-compose.localstack.yml pins) for
    the session; every System makes an account of its own in it (helpers.System)."""
    if not LOCALSTACK:
        yield None
        return
    from infra import localstack
    from infra.embedded import wait_http
    from helpers import free_port, stop_process
    localstack.install(ROOT / ".mk1")
    port, data = free_port(), tmp_path_factory.mktemp("localstack")
    proc = localstack.start(ROOT / ".mk1", port, data / "localstack.log", data=data)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_localstack/health", 120, proc)
        os.environ["MK1_TEST_AWS_ENDPOINT"] = url
        yield url
    finally:
        os.environ.pop("MK1_TEST_AWS_ENDPOINT", None)
        stop_process(proc)


@pytest.fixture(scope="session")
def system(tmp_path_factory):
    """The shared running system (fast runtimes, process backend)."""
    s = System(tmp_path_factory.mktemp("mk1")).start()
    yield s
    s.stop()


@pytest.fixture
def make_system(tmp_path):
    """A private system with its own settings, for tests that change them."""
    made = []

    def make(**env):
        s = System(tmp_path / f"sys{len(made)}", **env).start()
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()
