"""Settings, read from the environment with safe development defaults.

SQLite (``db.sqlite3`` at the repo root) is the embedded default; ``DATABASE_URL``
switches to PostgreSQL. DEBUG is off unless ``DJANGO_DEBUG=1``. ``DJANGO_HTTPS=1`` turns
on the HTTPS-only settings that ``manage.py check --deploy`` asks for.
"""

import json
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(int(default))).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG")
# Without DJANGO_SECRET_KEY: the fixed development key when DEBUG is on, otherwise a
# random key for this process only, so management commands and tests still run but
# nothing signed outlives the process. The service itself refuses to start without the
# variable when DEBUG is off (artifacts_project/startup.py).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "").strip() or (
    "django-insecure-development-only-key" if DEBUG else secrets.token_urlsafe(50)
)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

# HTTPS. Behind a TLS-terminating proxy, DJANGO_SECURE_PROXY_SSL_HEADER names the header
# the proxy sets and the value that means "https" (e.g. "HTTP_X_FORWARDED_PROTO,https");
# without it Django would see every proxied request as plain http and redirect forever.
if os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "").strip():
    _header = [part.strip() for part in os.environ["DJANGO_SECURE_PROXY_SSL_HEADER"].split(",")]
    if len(_header) != 2 or not all(_header):
        raise ImproperlyConfigured(
            "DJANGO_SECURE_PROXY_SSL_HEADER must be 'HEADER,value', e.g. 'HTTP_X_FORWARDED_PROTO,https'"
        )
    SECURE_PROXY_SSL_HEADER = tuple(_header)
if env_bool("DJANGO_HTTPS"):
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
# Load balancers probe /healthz over plain http; everything else is redirected to https.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally: the docs work offline
    "artifacts_project",  # the project's own commands (migrate as the owner, create_db_roles), templates
    "audit",
    "artifacts",
    "stories",
    "runs",
    "operations",
    "changes",
]

MIDDLEWARE = [
    "kernel.request_id.RequestIdMiddleware",
    # Inside the request id's scope, so a 503 names the request; it only acts on view errors.
    "kernel.outages.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "artifacts_project.urls"
WSGI_APPLICATION = "artifacts_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "artifacts_project" / "templates"],  # the landing page
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": dj_database_url.config(default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Persistent connections on PostgreSQL (health-checked below): opening one per request cost
# 6.6x on /healthz and 1.6x on a detail read under load. SQLite opens a file: nothing to keep.
DATABASES["default"]["CONN_MAX_AGE"] = int(
    os.environ.get("DATABASE_CONN_MAX_AGE", "60" if DATABASES["default"]["ENGINE"].endswith("postgresql") else "0")
)
# SPEC §12: on PostgreSQL the service connects (DATABASE_URL) as a role that owns nothing,
# and migrations run as the owner of the tables. DATABASE_OWNER_URL names the owner's
# connection to the same database; `migrate` then uses it by default. In tests it mirrors
# the default database instead of creating a second test database.
if os.environ.get("DATABASE_OWNER_URL", "").strip():
    DATABASES["owner"] = dj_database_url.parse(os.environ["DATABASE_OWNER_URL"].strip())
    DATABASES["owner"]["TEST"] = {"MIRROR": "default"}


def survive_outages(config: dict, *, statement_timeout: bool) -> None:
    """PostgreSQL settings for outages (SPEC §7: a 503 within the request timeout, and
    recovery by itself when the database is back).

    CONN_HEALTH_CHECKS: a persistent connection (DATABASE_CONN_MAX_AGE > 0) that the server
    dropped, in a restart or by pg_terminate_backend, is noticed and replaced at the start of
    the next request instead of failing it. DATABASE_CONNECT_TIMEOUT (seconds, default 5)
    bounds the wait for a server that does not answer. DATABASE_STATEMENT_TIMEOUT (seconds,
    default 30, 0 for none) bounds each statement, so a request stuck behind a lock answers
    503 before the worker timeout kills it; the owner's connection (migrations) has none.
    """
    if config["ENGINE"] != "django.db.backends.postgresql":
        return
    config["CONN_HEALTH_CHECKS"] = True
    options = config.setdefault("OPTIONS", {})
    options.setdefault("connect_timeout", int(os.environ.get("DATABASE_CONNECT_TIMEOUT", "5")))
    seconds = int(os.environ.get("DATABASE_STATEMENT_TIMEOUT", "30"))
    if statement_timeout and seconds > 0:
        # libpq's "options" sets it at connect time: no extra round trip per connection.
        options["options"] = f"{options.get('options', '')} -c statement_timeout={seconds}s".strip()


survive_outages(DATABASES["default"], statement_timeout=True)
if "owner" in DATABASES:
    survive_outages(DATABASES["owner"], statement_timeout=False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes SQLite's write lock at BEGIN, so two writers never both read
    # a stream's max version and then collide; the wait is bounded by `timeout`.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic gathers the static files (`make run` runs it, so WhiteNoise finds the
# folder and does not warn that it is missing).
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", "").strip() or BASE_DIR / "staticfiles")
# WhiteNoise also serves the admin's static files straight from the apps, so the service
# works with DEBUG off even before collectstatic (production runs collectstatic).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# Files served at the site's root: /favicon.ico, which browsers ask for on every page.
WHITENOISE_ROOT = BASE_DIR / "artifacts_project" / "root"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT", BASE_DIR / "media"))


def artifact_storage(environ) -> dict:
    """The storage of artifact content: files under MEDIA_ROOT, or, when ARTIFACT_S3_BUCKET
    names a bucket, S3-compatible storage (AWS, MinIO, R2...) through django-storages.
    ARTIFACT_S3_ENDPOINT_URL points at a server other than AWS (tests/storage runs moto's);
    credentials come from the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, read by boto3."""
    bucket = environ.get("ARTIFACT_S3_BUCKET", "").strip()
    if not bucket:
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": environ.get("ARTIFACT_S3_ENDPOINT_URL", "").strip() or None,
            "region_name": environ.get("ARTIFACT_S3_REGION", "").strip() or None,
            # Content is addressed by digest: the same name always holds the same bytes.
            "file_overwrite": True,
            "default_acl": None,
        },
    }


STORAGES = {
    "default": artifact_storage(os.environ),
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env_bool("DJANGO_MANIFEST_STATIC")
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Largest request body (JSON payload or media upload) the service accepts.
ARTIFACT_MAX_BODY_BYTES = int(os.environ.get("ARTIFACT_MAX_BODY_BYTES", str(5 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = ARTIFACT_MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = ARTIFACT_MAX_BODY_BYTES

REST_FRAMEWORK = {
    # Token first: its "WWW-Authenticate: Token" header is what makes an anonymous answer 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["kernel.api_defaults.ModelPermissions"],
    "DEFAULT_RENDERER_CLASSES": ["kernel.api_defaults.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["kernel.api_defaults.BoundedJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "kernel.api_defaults.CursorPagination",
    "DEFAULT_SCHEMA_CLASS": "kernel.api_schema.ApiSchema",
    "EXCEPTION_HANDLER": "kernel.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Artifact store API",
    "DESCRIPTION": (
        "Immutable, auto-versioned pipeline artifacts with lineage and run provenance. "
        "Authenticate with `Authorization: Token <key>` (or a session). Errors are "
        '`{"code", "message", "field"?, "request_id"}`.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SCHEMA_PATH_PREFIX": r"/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "LifecycleStateEnum": "artifacts.models.LifecycleState",
        "RunStatusEnum": "runs.models.RunStatus",
        "StepStatusEnum": "runs.models.StepStatus",
        "EventTypeEnum": "changes.models.EventType",
    },
    "PREPROCESSING_HOOKS": ["kernel.api.schema_preprocessing_hook"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "kernel.api.schema_postprocessing_hook",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "kernel.request_id.RequestIdLogFilter"}},
    "formatters": {"default": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "default",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
}


def env_json_object(name: str) -> dict:
    """A JSON object from the environment; anything else stops the service at start."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f'{name} must be a JSON object, e.g. {{"render_result": "pkg.module.func"}}')
    return value


# The pipeline (SPEC §10). PIPELINE_GENERATORS: type -> dotted path of a generator that
# replaces the shipped one. PIPELINE_PARAMS: type -> params merged over the node's defaults
# (they enter the fingerprint, so changing them remakes that node and what follows).
PIPELINE_GENERATORS = env_json_object("PIPELINE_GENERATORS")
PIPELINE_PARAMS = env_json_object("PIPELINE_PARAMS")


def env_number(name: str, default, kind=int):
    raw = os.environ.get(name, "").strip()
    try:
        return kind(raw) if raw else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


# Pipeline workers (SPEC §10). With CELERY_BROKER_URL (redis://... or amqp://...) pipeline work
# runs as Celery tasks on `celery -A artifacts_project worker`; without it, in-process.
# Delivery is at least once: a task is acknowledged when it ends, and a task whose worker
# died is delivered again (on Redis once the visibility timeout has passed; keep it above
# the longest node, or a node still running is delivered a second time). The pipeline's
# fingerprints make a second delivery reuse what the first committed.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "").strip()
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a worker holds one node at a time, not a backlog
CELERY_TASK_IGNORE_RESULT = True  # the database keeps the outcome: runs and steps
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_VISIBILITY_TIMEOUT = env_number("CELERY_VISIBILITY_TIMEOUT", 60)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # Look for messages whose worker died every quarter of the timeout (kombu's defaults
    # look every ~100 s, which would add that much to every redelivery).
    "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT // 4)),
    "unacked_restore_throttle": 1,
}
# A generator that raises is tried again with backoff (seconds, doubled each time) until
# PIPELINE_TASK_ATTEMPTS attempts have failed; then the run fails (and can be resumed).
PIPELINE_TASK_ATTEMPTS = env_number("PIPELINE_TASK_ATTEMPTS", 3)
PIPELINE_RETRY_BACKOFF = env_number("PIPELINE_RETRY_BACKOFF", 2.0, float)
# A run whose holder died (SPEC §10, "Crash-safe runs") is found at once on PostgreSQL (the
# holder's session lock is free); on SQLite once its heartbeat is older than this.
PIPELINE_RUN_STALE_SECONDS = env_number("PIPELINE_RUN_STALE_SECONDS", 60, float)

# Refuse a lock taken out of kernel/locks.py's order (the test suite turns it on).
LOCK_ORDER_CHECK = env_bool("LOCK_ORDER_CHECK")

# The change feed and webhooks (SPEC §14, §12).
CHANGES_RETENTION_DAYS = env_number("CHANGES_RETENTION_DAYS", 30)
# The longest a GET /v1/changes?wait= holds (the API takes 0 to 30 seconds).
CHANGES_MAX_WAIT_SECONDS = env_number("CHANGES_MAX_WAIT_SECONDS", 30.0, float)
WEBHOOK_RETRY_SCHEDULE = [int(s) for s in env_list("WEBHOOK_RETRY_SCHEDULE", "5,30,120,600,1800")]
WEBHOOK_ALLOWED_HOSTS = [h.lower() for h in env_list("WEBHOOK_ALLOWED_HOSTS", "")]
WEBHOOK_TIMEOUT_SECONDS = env_number("WEBHOOK_TIMEOUT_SECONDS", 10.0, float)
