import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "dispatcher_app", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from helpers import System  # noqa: E402


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
