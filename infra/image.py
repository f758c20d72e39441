"""Builds the image every Docker function container runs: a Python 3.11 base,
awslambdaric, and the socket shim (infra/docker_shim.py).

The image is tagged `mk1-lambda-python:<hash12>`, the hash covering every input
(base image name, Dockerfile, shim source, runtime package versions, the engine's
CPU), so it is rebuilt exactly when one of them changes. The base is, in order:
MK1_DOCKER_BASE_IMAGE; python:3.11-slim if present or pullable; else an image
made offline from Debian packages (debootstrap + `docker import`), because a
machine may reach Debian's mirror but no image registry. awslambdaric's wheels
are fetched and unpacked on the host with pip, so the image build needs no network.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import docker
from docker.errors import APIError, DockerException, ImageNotFound
from docker.utils import parse_repository_tag

from my_mk1_homework import settings as settings_mod

from . import docker_shim

IMAGE_REPO = "mk1-lambda-python"
INPUTS_LABEL = "mk1.image.inputs"
PUBLIC_BASE = "python:3.11-slim"
OFFLINE_BASE = "mk1-debian-python:bookworm"
DEBIAN_SUITE = "bookworm"  # its python3 is 3.11: the cp311 wheels below fit it
SITE_DIR = "/opt/mk1/site"
SHIM_PATH = "/opt/mk1/shim.py"
USER_ID = 1000  # the function's non-root user (Lambda, too, runs handlers unprivileged)
RUNTIME_PACKAGE = "awslambdaric"

DOCKERFILE = f"""\
FROM {{base}}
ENV PYTHONPATH={SITE_DIR} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8 HOME=/tmp
COPY site {SITE_DIR}
COPY docker_shim.py {SHIM_PATH}
RUN echo "mk1:x:{USER_ID}:{USER_ID}:mk1 function:/tmp:/usr/sbin/nologin" >> /etc/passwd \\
 && echo "mk1:x:{USER_ID}:" >> /etc/group \\
 && python3 -c "import awslambdaric.bootstrap"
USER {USER_ID}:{USER_ID}
WORKDIR /var/task
ENTRYPOINT ["python3", "{SHIM_PATH}"]
"""

Progress = Callable[[str], None]


def ensure_image(client: docker.DockerClient, progress: Progress = print,
                 settings: settings_mod.Settings | None = None) -> str:
    """Return the tag of an up-to-date function image, building it if needed."""
    settings = settings or settings_mod.load()
    base = _choose_base(client, settings, progress)
    packages = runtime_packages()
    arch = client.info()["Architecture"]  # the engine's, e.g. aarch64 under Docker Desktop on a Mac
    digest = inputs_hash(base, packages, arch)
    tag = f"{IMAGE_REPO}:{digest[:12]}"
    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    progress(f"building {tag} from {base} ...")
    with tempfile.TemporaryDirectory(prefix="mk1-image-") as ctx:
        _write_context(Path(ctx), base, packages, arch, progress)
        _build(client, Path(ctx), tag, digest, progress)
    progress(f"built {tag}")
    return tag


def runtime_packages() -> list[str]:
    """awslambdaric and its dependencies, pinned to the versions installed in mk1's venv."""
    pins = [f"{RUNTIME_PACKAGE}=={importlib.metadata.version(RUNTIME_PACKAGE)}"]
    for req in importlib.metadata.requires(RUNTIME_PACKAGE) or []:
        if "extra ==" in req:
            continue
        name = re.match(r"[A-Za-z0-9._-]+", req).group(0)  # type: ignore[union-attr]
        pins.append(f"{name}=={importlib.metadata.version(name)}")
    return pins


def inputs_hash(base: str, packages: list[str], arch: str) -> str:
    h = hashlib.sha256()
    for part in [base, DOCKERFILE, Path(docker_shim.__file__).read_text(), *packages, arch]:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


# -- the base image --
def _choose_base(client: docker.DockerClient, settings: settings_mod.Settings, progress: Progress) -> str:
    if settings.MK1_DOCKER_BASE_IMAGE:
        base = settings.MK1_DOCKER_BASE_IMAGE
        if not _present_or_pulled(client, base, progress):
            raise RuntimeError(f"MK1_DOCKER_BASE_IMAGE={base} is neither present nor pullable")
        return base
    if _present_or_pulled(client, PUBLIC_BASE, progress):
        return PUBLIC_BASE
    progress(f"{PUBLIC_BASE} cannot be pulled; using an offline Debian {DEBIAN_SUITE} base")
    with _lock(settings.home / "images"):
        if not _present(client, OFFLINE_BASE):
            _make_offline_base(client, settings.home / "images", progress)
    return OFFLINE_BASE


def _present(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except ImageNotFound:
        return False


def _present_or_pulled(client: docker.DockerClient, name: str, progress: Progress) -> bool:
    if _present(client, name):
        return True
    repo, tag = parse_repository_tag(name)
    try:
        for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                return False
            if event.get("status") and not event.get("progressDetail"):
                progress(f"pull {name}: {event['status']}")
    except (APIError, DockerException):
        return False
    return _present(client, name)


class _lock:
    """An exclusive file lock, so two mk1 processes never debootstrap into one directory."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / ".lock"

    def __enter__(self):
        self._file = open(self._path, "w")
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        self._file.close()  # closing releases the lock


def _make_offline_base(client: docker.DockerClient, images_dir: Path, progress: Progress) -> None:
    rootfs = images_dir / f"debian-{DEBIAN_SUITE}-rootfs"
    done = images_dir / f"debian-{DEBIAN_SUITE}-rootfs.done"
    if not done.exists():  # a rootfs left from an earlier run is reused: debootstrap takes ~40 s
        if os.geteuid() != 0 or not shutil.which("debootstrap"):
            raise RuntimeError("no Python base image: python:3.11-slim cannot be pulled and the offline "
                               "fallback needs root and debootstrap; set MK1_DOCKER_BASE_IMAGE")
        shutil.rmtree(rootfs, ignore_errors=True)  # a half-made one from an interrupted run
        mirror, keyring = debian_mirror()
        cmd = ["debootstrap", "--variant=minbase", "--include=python3"]
        cmd += [f"--keyring={keyring}"] if keyring else []
        cmd += [DEBIAN_SUITE, str(rootfs), mirror]
        progress(f"debootstrap {DEBIAN_SUITE} from {mirror} into {rootfs} (about a minute) ...")
        _run_streaming(cmd, progress)
        done.touch()
    progress(f"importing {rootfs} as {OFFLINE_BASE} ...")
    # The .deb files debootstrap keeps are ~50 MB the image never needs.
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--exclude=./var/cache/apt/archives/*.deb", "-c", "."],
                           stdout=subprocess.PIPE)
    try:
        repo, tag = OFFLINE_BASE.split(":")
        client.api.import_image_from_stream(_chunks(tar.stdout), repository=repo, tag=tag)  # type: ignore[arg-type]
    finally:
        tar.stdout.close()  # type: ignore[union-attr]
        if tar.wait() != 0:
            raise RuntimeError(f"tar of {rootfs} failed (exit {tar.returncode})")


def _chunks(stream, size: int = 1 << 20) -> Iterator[bytes]:
    # A generator body makes requests send chunked: a pipe has no length to announce.
    while data := stream.read(size):
        yield data


def debian_mirror(sources: list[Path] | None = None) -> tuple[str, str | None]:
    """(mirror URL, keyring) of the apt source that serves DEBIAN_SUITE, read from apt's own
    configuration so no mirror host is written into mk1."""
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", path.read_text()):
                fields = _deb822(stanza)
                if "deb" in fields.get("types", "").split() and DEBIAN_SUITE in fields.get("suites", "").split():
                    return fields["uris"].split()[0], fields.get("signed-by")
        elif path.suffix == ".list":
            for line in path.read_text().splitlines():
                m = re.match(r"\s*deb\s+(?:\[([^]]*)\]\s+)?(\S+)\s+(\S+)", line)
                if m and m.group(3) == DEBIAN_SUITE:
                    keyring = re.search(r"signed-by=(\S+)", m.group(1) or "")
                    return m.group(2), keyring.group(1) if keyring else None
    raise RuntimeError(f"no apt source for Debian {DEBIAN_SUITE} found in /etc/apt; "
                       "set MK1_DOCKER_BASE_IMAGE to a Python 3.11 image instead")


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    return fields


# -- the function image --
def _write_context(ctx: Path, base: str, packages: list[str], arch: str, progress: Progress) -> None:
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    shutil.copy(docker_shim.__file__, ctx / "docker_shim.py")
    wheels = ctx / "wheels"
    progress(f"fetching wheels: {' '.join(packages)}")
    _run_streaming([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.11", "--platform", f"manylinux2014_{arch}",
                    "-d", str(wheels), *packages], progress)
    _run_streaming([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(ctx / "site"), *map(str, sorted(wheels.glob("*.whl")))], progress)
    shutil.rmtree(wheels)  # only site/ goes into the image


def _build(client: docker.DockerClient, ctx: Path, tag: str, digest: str, progress: Progress) -> None:
    # network_mode none: the build needs nothing from outside, and this engine may have no bridge.
    for event in client.api.build(path=str(ctx), tag=tag, labels={INPUTS_LABEL: digest}, pull=False,
                                  network_mode="none", rm=True, forcerm=True, decode=True):
        if "error" in event:
            raise RuntimeError(f"building {tag} failed: {event['error'].strip()}")
        line = event.get("stream", "").strip()
        if line:
            progress(line)


def _run_streaming(cmd: list[str], progress: Progress) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # type: ignore[union-attr]
        progress(line.rstrip())
    if proc.wait() != 0:
        raise RuntimeError(f"{' '.join(cmd)[:200]} failed (exit {proc.returncode})")
