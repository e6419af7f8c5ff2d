"""NeoPain settings: one module, values from the environment (django-environ).

The embedded default (no env set) runs on a laptop with nothing installed:
SQLite and a SQLAlchemy/SQLite Celery broker under ``NEOPAIN_DATA_DIR``.
``DATABASE_URL`` and ``REDIS_URL`` switch to PostgreSQL and Redis.
``NEOPAIN_ENV=production`` switches on the production security settings.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def env_secret(name: str, default: str | None = None) -> str | None:
    """Read a secret from ``NAME`` or from the file named by ``NAME_FILE`` (Docker secrets)."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text().strip()
    return os.environ.get(name, default)


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """An integer setting; a typo (``NEOPAIN_BATCH_MAX=3O``) fails at start-up, not at 3 a.m."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


NEOPAIN_ENV = env.str("NEOPAIN_ENV", default="development")
if NEOPAIN_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"NEOPAIN_ENV must be development, test or production, not {NEOPAIN_ENV!r}")
PRODUCTION = NEOPAIN_ENV == "production"

# All mutable state (database, media, broker files, model bundles) lives here.
DATA_DIR = Path(env.str("NEOPAIN_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("NEOPAIN_DATA_DIR", str(DATA_DIR))  # the inference package reads it too

SECRET_KEY = env_secret("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("NEOPAIN_ENV=production needs DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE).")
    # A per-data-dir key, generated once, so sessions survive restarts of `make run`.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        from django.utils.crypto import get_random_string

        key_file.write_text(get_random_string(64))
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()
# The .env.example placeholder (and other well-known values) sign sessions anyone can forge.
PLACEHOLDER_SECRET_KEYS = {"change-me", "changeme", "change-me-too", "secret", "django-insecure"}
if PRODUCTION and (SECRET_KEY.strip().lower() in PLACEHOLDER_SECRET_KEYS or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "NEOPAIN_ENV=production refuses this DJANGO_SECRET_KEY (a placeholder, or under 32 characters): "
        'set a long random one, e.g. python -c "import secrets; print(secrets.token_urlsafe(50))".'
    )

# DEBUG shows the URLconf and tracebacks to anyone: only when explicitly asked for, never in production.
DEBUG = env.bool("NEOPAIN_DEBUG", default=False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("NEOPAIN_DEBUG must be off in production.")

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("NEOPAIN_ENV=production needs DJANGO_ALLOWED_HOSTS.")
if PRODUCTION and any(host.strip() in {"*", ".", ""} for host in ALLOWED_HOSTS):
    raise ImproperlyConfigured(
        "NEOPAIN_ENV=production refuses DJANGO_ALLOWED_HOSTS='*' (Host header poisoning): name the site's hosts."
    )
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "triage.admin_site.NeoPainAdminConfig",  # django.contrib.admin, superusers only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_prometheus",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "triage",
    "annotations",
    "ehr",
]

MIDDLEWARE = [
    # Request counts and latencies for /metrics (django-prometheus): first and last, to time everything.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "triage.middleware.RequestBodyCapMiddleware",
    "triage.middleware.NullCharacterMiddleware",
    "triage.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "triage.middleware.IdleSessionTimeoutMiddleware",
    "triage.middleware.PhiReadAuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "neopain_site.urls"
WSGI_APPLICATION = "neopain_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "triage.context_processors.neopain",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'neopain.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the web server and the worker process share the file.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        }
    )
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
# Persistent connections, SQLite included: opening the file and running its PRAGMAs cost ~1 ms of
# every request (scripts/bench_ingest.py).
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
# PostgreSQL: the app's own login role (docker compose: neopain_app). Set where `migrate` runs (as
# the owner role): after every migrate it is granted what the app needs, and on the audit table only
# SELECT and INSERT (triage/dbroles.py). Empty: no grants (one role, e.g. a laptop or SQLite).
NEOPAIN_DB_APP_ROLE = env.str("NEOPAIN_DB_APP_ROLE", default="")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "triage.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Passwords (unless NEOPAIN_LOCAL_LOGIN switches them off), then the OpenID Connect provider when
# NEOPAIN_OIDC_ISSUER is set (neopain_site/sso_settings.py, docs/sso.md).
AUTHENTICATION_BACKENDS = ["triage.sso.backends.LocalPasswordBackend", "triage.sso.backends.OIDCBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "triage:dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("NEOPAIN_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("NEOPAIN_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# Outside production WhiteNoise serves straight from the app folders: `make run` (DEBUG off) needs
# no collectstatic. Production serves the collected, hashed files.
WHITENOISE_USE_FINDERS = not PRODUCTION
# Patient images are private: stored outside any public URL, served by an authorised view.
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = None
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": "/nonexistent-private/"},
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MODELS_DIR = DATA_DIR / "models"

# Uploads: caps checked before anything is stored.
NEOPAIN_MAX_UPLOAD_BYTES = env_int("NEOPAIN_MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1)
NEOPAIN_MAX_IMAGE_PIXELS = env_int("NEOPAIN_MAX_IMAGE_PIXELS", 40_000_000, minimum=1)
NEOPAIN_MAX_CLIP_BYTES = env_int("NEOPAIN_MAX_CLIP_BYTES", 200 * 1024 * 1024, minimum=1)
NEOPAIN_MAX_FUTURE_SKEW_SECONDS = env_int("NEOPAIN_MAX_FUTURE_SKEW_SECONDS", 300)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200
DATA_UPLOAD_MAX_NUMBER_FILES = 5
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Every request body outside the frame and clip uploads (forms, JSON, acknowledgements): refused
# with 413 before it is read or spooled (triage.middleware.RequestBodyCapMiddleware).
NEOPAIN_MAX_REQUEST_BYTES = env_int("NEOPAIN_MAX_REQUEST_BYTES", 1024 * 1024, minimum=1024)
# Uploads: per camera and per user, across the frame and clip endpoints (429 with Retry-After).
NEOPAIN_UPLOAD_RATE_DEVICE = env.str("NEOPAIN_UPLOAD_RATE_DEVICE", default="120/min")
NEOPAIN_UPLOAD_RATE_USER = env.str("NEOPAIN_UPLOAD_RATE_USER", default="60/min")
# A clip frame is decoded at this size at most (width x height), checked on the stream header.
NEOPAIN_MAX_CLIP_PIXELS = env_int("NEOPAIN_MAX_CLIP_PIXELS", 1920 * 1080, minimum=1)
FILE_UPLOAD_PERMISSIONS = 0o600

NEOPAIN_DETECTOR = env.str("NEOPAIN_DETECTOR", default="retinaface")
NEOPAIN_DETECTOR_WEIGHTS = env.str("NEOPAIN_DETECTOR_WEIGHTS", default="")
NEOPAIN_FACE_MARGIN = env_float("NEOPAIN_FACE_MARGIN", 0.2, minimum=0.0, maximum=1.0)
NEOPAIN_BATCH_MAX = env_int("NEOPAIN_BATCH_MAX", 32, minimum=1)
NEOPAIN_STUCK_FRAME_SECONDS = env_int("NEOPAIN_STUCK_FRAME_SECONDS", 600, minimum=1)
# A frame claimed this many times without an outcome (worker crashes, repeated faults) is failed.
NEOPAIN_FRAME_MAX_ATTEMPTS = env_int("NEOPAIN_FRAME_MAX_ATTEMPTS", 5, minimum=1)
NEOPAIN_SALIENCY = env.bool("NEOPAIN_SALIENCY", default=True)

# Sessions: automatic logoff after idle time (bedside workstations are shared).
NEOPAIN_IDLE_TIMEOUT_SECONDS = env_int("NEOPAIN_IDLE_TIMEOUT_SECONDS", 15 * 60, minimum=1)
SESSION_COOKIE_AGE = env_int("NEOPAIN_SESSION_MAX_AGE_SECONDS", 12 * 3600, minimum=1)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False
NEOPAIN_LOGIN_FAILURE_LIMIT = env_int("NEOPAIN_LOGIN_FAILURE_LIMIT", 5, minimum=1)
NEOPAIN_LOGIN_FAILURE_WINDOW_SECONDS = env_int("NEOPAIN_LOGIN_FAILURE_WINDOW_SECONDS", 900, minimum=1)
# After the limit, (address, user name) waits this long, doubling with every further failure
# (capped at the window): the right password works again once the wait is over.
NEOPAIN_LOGIN_BACKOFF_SECONDS = env_int("NEOPAIN_LOGIN_BACKOFF_SECONDS", 30, minimum=1)
# Failed sign-ins from one address across all user names (password spraying) before it waits too.
NEOPAIN_LOGIN_ADDRESS_FAILURE_LIMIT = env_int("NEOPAIN_LOGIN_ADDRESS_FAILURE_LIMIT", 30, minimum=1)
# Failed sign-ins for one user name from any addresses (a distributed guess) before the account is
# locked out for NEOPAIN_LOGIN_ACCOUNT_LOCKOUT_SECONDS (audited as login.locked_out). Higher than the
# per-address limit: a stranger can lock an account this way, but only for a while, and it is audited.
NEOPAIN_LOGIN_ACCOUNT_FAILURE_LIMIT = env_int("NEOPAIN_LOGIN_ACCOUNT_FAILURE_LIMIT", 20, minimum=1)
NEOPAIN_LOGIN_ACCOUNT_LOCKOUT_SECONDS = env_int("NEOPAIN_LOGIN_ACCOUNT_LOCKOUT_SECONDS", 900, minimum=1)
# Prometheus: /metrics (and the worker's port) answer a caller presenting this bearer token, or one
# from an allowed address or network; with neither set nobody may scrape (403).
NEOPAIN_METRICS_TOKEN = env_secret("NEOPAIN_METRICS_TOKEN", default="") or ""
if NEOPAIN_METRICS_TOKEN and len(NEOPAIN_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("NEOPAIN_METRICS_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 24`).")
NEOPAIN_METRICS_ALLOWED_IPS = env.list("NEOPAIN_METRICS_ALLOWED_IPS", default=[])
# The Celery worker's own metrics endpoint (inference time, batch size); 0 = none.
NEOPAIN_WORKER_METRICS_PORT = env_int("NEOPAIN_WORKER_METRICS_PORT", 0)
NEOPAIN_WORKER_METRICS_ADDRESS = env.str("NEOPAIN_WORKER_METRICS_ADDRESS", default="127.0.0.1")
# Reverse proxies whose X-Forwarded-For is believed (addresses or networks, comma-separated).
# Without it every request behind a proxy shares the proxy's address.
NEOPAIN_TRUSTED_PROXIES = env.list("NEOPAIN_TRUSTED_PROXIES", default=[])

X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts only from our own static files, never inline.
# Inline styles stay allowed: htmx injects its indicator style and the meters set widths inline.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
from neopain_site.sso_settings import *  # noqa: E402, F403 (single sign-on, all from the environment)

CONTENT_SECURITY_POLICY = csp_with_provider(CONTENT_SECURITY_POLICY, NEOPAIN_OIDC_ISSUER)  # noqa: F405
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

REDIS_URL = env.str("REDIS_URL", default="")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "neopain_cache"}
    ),
    # Upload rate history (triage/throttles.py): shared through Redis; without it, per web process
    # (the database cache would add a write to every upload).
    "throttle": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "throttle"}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "neopain-throttle"}
    ),
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Hashed, expiring ApiToken rows (triage.services.tokens), the caller's camera read in the same query.
        "triage.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "neopain_site.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "triage.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "triage.apis.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "login": "10/min",
        "upload_device": NEOPAIN_UPLOAD_RATE_DEVICE,
        "upload_user": NEOPAIN_UPLOAD_RATE_USER,
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "NeoPain API",
    "DESCRIPTION": "Neonatal pain triage: frame ingest, nurse cases, NIPS assessments, alerts.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from our own static files (drf-spectacular-sidecar), not a CDN without SRI.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: Redis when REDIS_URL is set, else a SQLite-backed broker that needs no server.
# CELERY_BROKER_URL overrides both (e.g. RabbitMQ, or a test pointing a worker at another file).
CELERY_BROKER_URL = (
    env.str("CELERY_BROKER_URL", default="") or REDIS_URL or f"sqla+sqlite:///{DATA_DIR / 'celery-broker.sqlite3'}"
)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 4, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 180, minimum=1)
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT (the soft limit fails frames cleanly)."
    )
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# A new worker process imports torch before it reports ready (neopain_site.celery): allow for it.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = 60
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # visibility_timeout must exceed the longest retry countdown, or Redis redelivers early.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 3600,
        "max_retries": 1,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }
elif CELERY_BROKER_URL.startswith("sqla+"):
    import sqlite3

    class _BrokerSQLiteConnection(sqlite3.Connection):
        """WAL + synchronous=NORMAL, as the app's own SQLite: SQLite's default rollback journal with
        full sync cost ~14 ms of fsync per published upload (scripts/bench_latency.py). A message lost
        to a power cut is re-published by the sweeper: the frame is still ``queued`` in the app DB."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.execute("PRAGMA journal_mode=WAL")
            self.execute("PRAGMA synchronous=NORMAL")

    # kombu's SQLAlchemy transport hands these to create_engine(): only engine arguments belong here.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"connect_args": {"timeout": 10, "factory": _BrokerSQLiteConnection}}
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_TASK_DEFAULT_QUEUE = "default"
# Clips (keyframe extraction from video, seconds each) have a queue of their own so that they
# cannot starve frame scoring.
CELERY_TASK_ROUTES = {
    "triage.tasks.frame_process": {"queue": "inference"},
    "triage.tasks.clip_process": {"queue": "clips"},
}
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-frames": {"task": "triage.tasks.frames_sweep", "schedule": timedelta(minutes=1)},
    # Unacknowledged alerts go to the charge nurse after the unit's alert_escalation_minutes.
    "escalate-unacknowledged-alerts": {"task": "triage.tasks.alerts_escalate", "schedule": timedelta(minutes=1)},
}
# Learning loop (annotations.tasks): off unless set. Training takes minutes, so it has a queue of
# its own (`celery -A neopain_site worker -Q training`) and never blocks the inference workers.
NEOPAIN_RETRAIN_EVERY_N_LABELS = env_int("NEOPAIN_RETRAIN_EVERY_N_LABELS", 0)
CELERY_TASK_ROUTES["annotations.tasks.retrain_when_new_labels"] = {"queue": "training"}
if NEOPAIN_RETRAIN_EVERY_N_LABELS:
    CELERY_BEAT_SCHEDULE["retrain-when-new-labels"] = {
        "task": "annotations.tasks.retrain_when_new_labels",
        "schedule": timedelta(hours=1),
    }

# FHIR R4 for the EHR (ehr app, docs/fhir.md). The MRN's identifier system is the hospital's (ask the
# EHR team, e.g. urn:oid:...); NeoPain's own identifiers (observation ids, user names, model hashes)
# live under NEOPAIN_FHIR_IDENTIFIER_SYSTEM.
NEOPAIN_FHIR_MRN_SYSTEM = env.str("NEOPAIN_FHIR_MRN_SYSTEM", default="urn:neopain:mrn")
NEOPAIN_FHIR_IDENTIFIER_SYSTEM = env.str("NEOPAIN_FHIR_IDENTIFIER_SYSTEM", default="urn:neopain").rstrip("/")
# Bulk Data export files are kept this long after they are written, then deleted (fhir_sweep).
NEOPAIN_FHIR_EXPORT_HOURS = env_int("NEOPAIN_FHIR_EXPORT_HOURS", 24, minimum=1)
# Push: each final assessment and alert is POSTed to this FHIR base URL (empty: no push), through the
# outbox table, retried with backoff; NEOPAIN_FHIR_PUSH_UNITS limits it to some units (codes).
NEOPAIN_FHIR_ENDPOINT = env.str("NEOPAIN_FHIR_ENDPOINT", default="").strip()
if NEOPAIN_FHIR_ENDPOINT and not NEOPAIN_FHIR_ENDPOINT.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"NEOPAIN_FHIR_ENDPOINT must be an http(s) URL, got {NEOPAIN_FHIR_ENDPOINT!r}")
NEOPAIN_FHIR_TOKEN = env_secret("NEOPAIN_FHIR_TOKEN", "") or ""
NEOPAIN_FHIR_PUSH_UNITS = env.list("NEOPAIN_FHIR_PUSH_UNITS", default=[])
NEOPAIN_FHIR_PUSH_MAX_ATTEMPTS = env_int("NEOPAIN_FHIR_PUSH_MAX_ATTEMPTS", 20, minimum=1)
NEOPAIN_FHIR_TIMEOUT_SECONDS = env_int("NEOPAIN_FHIR_TIMEOUT_SECONDS", 10, minimum=1)
CELERY_BEAT_SCHEDULE["fhir-sweep"] = {"task": "ehr.tasks.fhir_sweep", "schedule": timedelta(minutes=1)}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("NEOPAIN_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if NEOPAIN_ENV == "test":
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
