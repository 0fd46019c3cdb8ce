"""compose.yaml, checked without Docker: it parses, runs real subcommands, pins images.

``docker compose config`` is not available here, so the file is read with PyYAML
(anchors and merge keys resolved as compose resolves them) and each service is
checked: what it runs, which image, and that the files it mounts exist. The
AlertManager configuration goes through ``amtool check-config`` when amtool is
installed.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.unit.deploy.deploykit import ROOT, check_punchingfist_argv

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
LOCAL_IMAGE = "punchingfist:local"
# Modules the stand-in services run. They are written from the tests' Slack and LLM
# servers (tests are not in the image); both have landed, so every module must exist.
ARRIVING_MODULES: set[str] = set()
EXPECTED = {
    "redis", "postgres", "migrate", "ingest", "engine", "notifier", "controller",
    "scheduler", "flower", "alertmanager", "prometheus", "slack", "llm",
}  # fmt: skip


def test_every_expected_service_is_there() -> None:
    assert set(SERVICES) >= EXPECTED


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_pinned_or_built_here(name: str) -> None:
    service = SERVICES[name]
    image = service["image"]
    if image == LOCAL_IMAGE:
        assert service["build"] == ".", name
        return
    assert _pinned(image), (name, image)


def _pinned(image: str) -> bool:
    repository, _, tag = image.rpartition(":")
    return bool(repository) and tag != "latest" and any(c.isdigit() for c in tag)


@pytest.mark.parametrize(
    "name", sorted(n for n, s in SERVICES.items() if s["image"] == LOCAL_IMAGE)
)
def test_project_services_run_real_commands(name: str) -> None:
    service = SERVICES[name]
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        check_punchingfist_argv(service["command"], f"compose service {name}")
    elif entrypoint == ["celery"]:
        assert "flower" in service["command"], name
    else:
        assert entrypoint[:2] == ["python", "-m"], name
        module = entrypoint[2]
        path = ROOT / (module.replace(".", "/") + ".py")
        assert path.exists() or module in ARRIVING_MODULES, f"{name}: no module {module}"


@pytest.mark.parametrize("name", ["engine", "notifier"])
def test_workers_have_a_liveness_healthcheck(name: str) -> None:
    test = SERVICES[name]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "punchingfist"], test
    assert test[2:4] == ["healthcheck", name], test
    check_punchingfist_argv(test[2:], f"compose {name} healthcheck")


@pytest.mark.parametrize("name", ["controller", "ingest", "engine", "notifier", "scheduler"])
def test_deployables_come_back_after_they_exit(name: str) -> None:
    # A worker that exits on an error it cannot recover from must not stay down.
    assert SERVICES[name].get("restart") == "unless-stopped"


def test_controller_reads_the_examples_folder() -> None:
    controller = SERVICES["controller"]
    assert controller["command"] == ["controller", "--config-dir", "/config"]
    assert "./examples:/config:ro" in controller["volumes"]


def test_redis_keeps_an_append_only_file() -> None:
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


def test_flower_is_on_5555() -> None:
    assert "127.0.0.1:5555:5555" in SERVICES["flower"]["ports"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_mounted_files_exist(name: str) -> None:
    for volume in SERVICES[name].get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_prometheus_has_a_rule_that_fires_and_sends_to_alertmanager() -> None:
    config = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
    rules = yaml.safe_load((ROOT / "deploy/compose/rules.yml").read_text())
    always = [
        rule for group in rules["groups"] for rule in group["rules"] if rule["expr"] == "vector(1)"
    ]
    assert always, "no rule that always fires"
    # The example Source keeps only these severities.
    assert always[0]["labels"]["severity"] in {"critical", "warning"}


def test_alertmanager_posts_to_ingest_with_the_example_token() -> None:
    config = yaml.safe_load((ROOT / "deploy/compose/alertmanager.yml").read_text())
    webhook = config["receivers"][0]["webhook_configs"][0]
    assert webhook["url"] == "http://ingest:8080/webhook/alertmanager"
    assert webhook["send_resolved"] is True
    token_file = webhook["http_config"]["authorization"]["credentials_file"]
    mount = "./examples/secrets:/etc/alertmanager/secrets:ro"
    assert mount in SERVICES["alertmanager"]["volumes"]
    relative = token_file.removeprefix("/etc/alertmanager/secrets/")
    assert (ROOT / "examples/secrets" / relative).is_file()


@pytest.mark.parametrize(
    "path", ["deploy/compose/alertmanager.yml", "k8s/monitoring/alertmanager-receiver.yaml"]
)
def test_alertmanager_configs_pass_amtool(path: str) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool (prometheus-alertmanager) is not installed")
    result = subprocess.run(
        [amtool, "check-config", str(ROOT / path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
