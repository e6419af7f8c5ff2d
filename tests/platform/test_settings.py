"""Settings: critical values spelled right, production refuses unsafe starts, every env var documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.support import environ_without_app_settings

ROOT = Path(settings.BASE_DIR)
ENV_READ = re.compile(
    r"""(?:env(?:\.\w+)?|env_int|env_float|env_secret|os\.environ\.get|os\.getenv)\(\s*f?["']([A-Z][A-Z0-9_]+)["']"""
)


def settings_env_names() -> set[str]:
    """Every environment variable neopain_site/settings.py (and the modules it includes) reads."""
    return {
        name
        for module in ("settings.py", "sso_settings.py")
        for name in ENV_READ.findall((ROOT / "neopain_site" / module).read_text())
    }


def run_settings(env: dict[str, str], code: str = "import django; django.setup(); print('started')"):
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**environ_without_app_settings(), "DJANGO_SETTINGS_MODULE": "neopain_site.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_celery_setting_is_a_real_celery_setting():
    """A misspelled Celery setting is silently ignored: compare each CELERY_* name with Celery's own list."""
    from celery.app.defaults import NAMESPACES, flatten

    known = {key.upper() for key, _ in flatten(NAMESPACES)}
    ours = {name[len("CELERY_") :] for name in dir(settings) if name.startswith("CELERY_")}
    assert ours, "no CELERY_ settings found"
    assert sorted(ours - known) == []


def test_the_celery_app_has_the_critical_settings():
    from neopain_site.celery import app

    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.task_routes["triage.tasks.frame_process"] == {"queue": "inference"}
    assert conf.task_routes["triage.tasks.clip_process"] == {"queue": "clips"}  # never ahead of frames
    assert conf.beat_schedule["sweep-stuck-frames"]["task"] == "triage.tasks.frames_sweep"
    assert conf.beat_schedule["escalate-unacknowledged-alerts"]["task"] == "triage.tasks.alerts_escalate"
    assert conf.broker_connection_timeout <= 5


def test_every_routed_or_scheduled_task_exists():
    from neopain_site.celery import app

    app.loader.import_default_modules()
    names = set(settings.CELERY_TASK_ROUTES) | {e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    assert names <= set(app.tasks)


def test_the_tasks_ack_late_and_retry_transient_faults():
    from django.db import OperationalError

    from triage.tasks import frame_process

    assert frame_process.acks_late is True and frame_process.reject_on_worker_lost is True
    assert OperationalError in frame_process.autoretry_for and frame_process.max_retries == 5


def test_the_critical_django_settings():
    assert settings.AUTH_USER_MODEL == "triage.User"
    assert settings.REST_FRAMEWORK["EXCEPTION_HANDLER"] == "triage.apis.exception_handler"
    from django.utils.module_loading import import_string
    from rest_framework.authentication import TokenAuthentication

    # DRF's token authentication or a subclass of it (triage.auth joins the camera row).
    assert any(
        issubclass(import_string(path), TokenAuthentication)
        for path in settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]
    )
    assert settings.REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"] == ["rest_framework.permissions.IsAuthenticated"]
    assert "triage.middleware.DatabaseUnavailableMiddleware" in settings.MIDDLEWARE
    assert settings.MEDIA_URL is None  # patient images are never served from a public URL
    for name in (
        "NEOPAIN_MAX_UPLOAD_BYTES",
        "NEOPAIN_MAX_IMAGE_PIXELS",
        "NEOPAIN_MAX_FUTURE_SKEW_SECONDS",
        "NEOPAIN_BATCH_MAX",
        "NEOPAIN_STUCK_FRAME_SECONDS",
        "NEOPAIN_DETECTOR",
        "NEOPAIN_SALIENCY",
    ):
        assert hasattr(settings, name), name


def test_the_embedded_default_needs_no_server():
    result = run_settings(
        {"NEOPAIN_DATA_DIR": "/tmp/neopain-settings-probe"},
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL)",
    )
    assert result.returncode == 0, result.stderr
    engine, broker = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert broker == "sqla+sqlite:////tmp/neopain-settings-probe/celery-broker.sqlite3"


def test_database_and_redis_urls_switch_to_the_real_services():
    result = run_settings(
        {
            "DATABASE_URL": "postgres://u@127.0.0.1:5432/x",
            "REDIS_URL": "redis://127.0.0.1:6379/3",
            "NEOPAIN_DATA_DIR": "/tmp/neopain-settings-probe",
        },
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.CACHES['default']['BACKEND'])",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "redis://127.0.0.1:6379/3",
        "django.core.cache.backends.redis.RedisCache",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_ALLOWED_HOSTS": "neopain.example.org"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "x" * 50}, "DJANGO_ALLOWED_HOSTS"),
        ({"DJANGO_SECRET_KEY": "x" * 50, "DJANGO_ALLOWED_HOSTS": "a.org", "NEOPAIN_DEBUG": "1"}, "NEOPAIN_DEBUG"),
    ],
    ids=["no-secret-key", "no-allowed-hosts", "debug-on"],
)
def test_production_refuses_to_start_unsafely(env, message, tmp_path):
    result = run_settings({"NEOPAIN_ENV": "production", "NEOPAIN_DATA_DIR": str(tmp_path), **env})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr
    assert not (tmp_path / "secret_key").exists()  # production never invents a key


def test_production_switches_on_the_security_settings(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 60 + "\n")
    result = run_settings(
        {
            "NEOPAIN_ENV": "production",
            "DJANGO_SECRET_KEY_FILE": str(secret),
            "DJANGO_ALLOWED_HOSTS": "a.org,b.org",
            "NEOPAIN_DATA_DIR": str(tmp_path),
        },
        "import django; django.setup(); from django.conf import settings as s; print(s.DEBUG, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0, s.SECRET_KEY == 's' * 60, "
        "','.join(s.ALLOWED_HOSTS))",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "True", "True", "True", "a.org,b.org"]


@pytest.mark.parametrize(
    "env",
    [
        {"NEOPAIN_ENV": "staging"},
        {"NEOPAIN_BATCH_MAX": "3O"},
        {"NEOPAIN_BATCH_MAX": "0"},
        {"NEOPAIN_FACE_MARGIN": "2"},
        {"CELERY_TASK_SOFT_TIME_LIMIT": "300", "CELERY_TASK_TIME_LIMIT": "200"},
    ],
    ids=["env", "not-int", "zero-batch", "margin", "soft-over-hard"],
)
def test_bad_values_fail_at_start_up(env, tmp_path):
    result = run_settings({"NEOPAIN_DATA_DIR": str(tmp_path), **env})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr


def test_every_env_var_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    names = settings_env_names() | {
        "PORT",
        "NEOPAIN_DEVICE",
        "NEOPAIN_TORCH_THREADS",
        "NEOPAIN_ADMIN_PASSWORD",
        "NEOPAIN_NURSE_PASSWORD",
        "NEOPAIN_WORKER_CONCURRENCY",
        "WEB_CONCURRENCY",
    }
    for path in [
        *(ROOT / "inference").glob("*.py"),
        *(ROOT / "annotations").glob("*.py"),
        *(ROOT / "triage").glob("*.py"),
    ]:
        names |= {n for n in ENV_READ.findall(path.read_text()) if n.startswith("NEOPAIN_")}
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert missing == []
