"""docker-compose.localstack.yml runs the LocalStack that `make test-localstack` runs in CI: the same
pinned version, the same settings, mk1's plugin mounted and installed before it starts, every port on
loopback. The compose file itself cannot run here (no LocalStack image offline); this is as far as this
machine takes it (docs/OPERATIONS.md, "LocalStack instead of the embedded AWS")."""
import yaml

from infra import localstack

COMPOSE = yaml.safe_load(localstack.COMPOSE.read_text())


def _env(service: str) -> dict[str, str]:
    return dict(e.split("=", 1) for e in COMPOSE["services"][service]["environment"])


def test_the_compose_file_runs_the_ci_jobs_localstack_with_its_settings():
    ls = COMPOSE["services"]["localstack"]
    assert ls["image"] == f"localstack/localstack:{localstack.pinned_version()}"
    env = _env("localstack")
    assert {k: env.get(k) for k in localstack.SETTINGS} == localstack.SETTINGS
    assert env["LOCALSTACK_HOST"] == "127.0.0.1:4566"


def test_mk1s_plugin_is_mounted_and_installed_at_boot():
    mounts = {m.split(":")[1]: m.split(":")[0] for m in COMPOSE["services"]["localstack"]["volumes"]}
    source = mounts["/opt/mk1-localstack-plugin"]
    assert (localstack.ROOT / source).resolve() == localstack.PLUGIN
    boot = mounts["/etc/localstack/init/boot.d/mk1-plugin.sh"]
    script = (localstack.ROOT / boot).read_text()
    assert "/opt/mk1-localstack-plugin" in script and "--no-build-isolation" in script
    assert (localstack.PLUGIN / "pyproject.toml").read_text().count("mk1_localstack:") == 2


def test_every_published_port_is_on_loopback_and_mk1_points_at_localstack():
    for name, service in COMPOSE["services"].items():
        assert all(p.startswith("127.0.0.1:") for p in service.get("ports", [])), name
    disp = _env("dispatcher")
    assert disp["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566" and disp["MK1_EMBEDDED_AWS"] == "never"
