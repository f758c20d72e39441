"""Container backends behind one interface (base.py): process, docker."""
from __future__ import annotations

import logging

log = logging.getLogger("mk1.backends")


def select_backend(settings):
    """MK1_BACKEND=process|docker|auto (auto: docker when an engine answers)."""
    choice = settings.MK1_BACKEND
    if choice in ("docker", "auto"):
        try:
            from chalicelib.execute.backends.docker import DockerBackend, engine_available
        except ImportError:
            if choice == "docker":
                raise
        else:
            if engine_available():
                return DockerBackend(settings)
            if choice == "docker":
                raise RuntimeError("MK1_BACKEND=docker but no Docker engine answers")
            log.info("no Docker engine answers: using the process backend")
    from pathlib import Path

    from chalicelib.execute.backends.process import ProcessBackend
    from chalicelib.execute.runtimes import Runtimes
    return ProcessBackend(Runtimes(Path(settings.MK1_RUNTIMES_DIR)))
