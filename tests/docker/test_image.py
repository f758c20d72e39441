"""infra/image.py: the inputs that decide a rebuild, the mirror read from apt, the cache."""
from __future__ import annotations

import pytest

from infra import image


def test_inputs_hash_changes_with_each_input():
    packages = image.runtime_packages()
    same = image.inputs_hash("base:1", packages, "x86_64")
    assert same == image.inputs_hash("base:1", packages, "x86_64")
    assert same != image.inputs_hash("base:2", packages, "x86_64")
    assert same != image.inputs_hash("base:1", [*packages[:-1], "simplejson==0.0.1"], "x86_64")
    assert same != image.inputs_hash("base:1", packages, "aarch64")


def test_runtime_packages_pin_awslambdaric_and_its_dependencies():
    names = [p.split("==")[0] for p in image.runtime_packages()]
    assert names[0] == "awslambdaric" and "simplejson" in names
    assert all("==" in p for p in image.runtime_packages())


def test_debian_mirror_from_deb822_sources(tmp_path):
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\nComponents: main\n")
    assert image.debian_mirror([sources]) == ("http://mirror.test/debian",
                                              "/usr/share/keyrings/debian-archive-keyring.gpg")


def test_debian_mirror_from_one_line_list(tmp_path):
    other = tmp_path / "other.list"
    other.write_text("deb https://apt.test/x stable main\n")
    listed = tmp_path / "sources.list"
    listed.write_text("# deb http://old.test/debian bookworm main\n"
                      "deb [arch=amd64 signed-by=/k.gpg] http://mirror.test/debian bookworm main\n")
    assert image.debian_mirror([other, listed]) == ("http://mirror.test/debian", "/k.gpg")


def test_no_debian_source_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="MK1_DOCKER_BASE_IMAGE"):
        image.debian_mirror([tmp_path / "missing.sources"])


@pytest.mark.docker
def test_built_image_is_reused(docker_backend):
    lines: list[str] = []
    assert image.ensure_image(docker_backend.client, lines.append) == docker_backend.image
    assert not [line for line in lines if "building" in line]
    labels = docker_backend.client.images.get(docker_backend.image).labels
    assert docker_backend.image.endswith(labels[image.INPUTS_LABEL][:12])
