"""Settings. Every environment variable the platform reads is read here (README lists them).

They only read configuration: no probe, no connection, no server started. Which PostgreSQL and
Redis to use is found by the commands that need services (``config.discovery``: ``make run`` /
``make test`` / ``manage.py`` / the test session), which export ``DATABASE_URL`` and ``REDIS_URL``
before the settings load; unset, the defaults in ``config.connections`` apply."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from config import connections
from config.env import dotenv_load

BASE_DIR = Path(__file__).resolve().parent.parent

dotenv_load()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return default if raw is None else raw.strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Production unless told otherwise: only DJANGO_DEBUG=1 (which `make run` and `make test` export)
# gives development settings. In production a missing secret stops start-up with one line (manage.py
# prints it and exits 1), never a fallback: a public development key would sign sessions and
# encrypt gateway credentials.
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: production settings (DJANGO_DEBUG unset or 0) need a long "
            "random secret; for development set DJANGO_DEBUG=1"
        )
    SECRET_KEY = "dev-insecure-secret-key-do-not-use-in-production"
# Fernet keys (newest first) for secrets at rest, e.g. gateway credentials (apps.core.crypto). Only
# in development may they be missing: then one is derived from the (development) secret key.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", "")
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is not set: production settings need one or more Fernet keys "
            "(make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'); for development set DJANGO_DEBUG=1"
        )
    FIELD_ENCRYPTION_KEYS = [
        base64.urlsafe_b64encode(hashlib.sha256(f"field-encryption:{SECRET_KEY}".encode()).digest()).decode()
    ]
for _position, _key in enumerate(FIELD_ENCRYPTION_KEYS, start=1):
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEYS: key {_position} is not a Fernet key (32 url-safe base64-encoded bytes)"
        ) from None
# Production: the hosts served, e.g. ".payments.example.com,payments.example.com" (a leading dot
# takes every subdomain: each marketplace's domain must match); unset, every request is refused.
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "*" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
PUBLIC_DOMAINS = env_list("PUBLIC_DOMAINS", "localhost,127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))

# --------------------------------------------------------------------------- services
# Read, never probed: the commands export what discovery found (config.discovery), so every
# process (web, worker, beat) `make run` starts is on the same choice.
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip() or connections.DEFAULT_DATABASE_URL
REDIS_URL = os.environ.get("REDIS_URL", "").strip() or connections.DEFAULT_REDIS_URL
# Each process (web server, Celery worker child, beat) holds at most DATABASE_POOL_MAX_SIZE
# PostgreSQL connections, in psycopg's pool: a threaded server may answer many more clients at
# once, each then waiting up to DATABASE_POOL_TIMEOUT seconds for a free connection. Size it so
# pool size x processes stays below the server's max_connections (README "Connections").
# 0 turns the pool off: one connection per thread, kept DB_CONN_MAX_AGE seconds (unbounded).
DATABASE_POOL_MAX_SIZE = int(os.environ.get("DATABASE_POOL_MAX_SIZE", "10"))
DATABASE_POOL_MIN_SIZE = int(os.environ.get("DATABASE_POOL_MIN_SIZE", "1"))
DATABASE_POOL_TIMEOUT = float(os.environ.get("DATABASE_POOL_TIMEOUT", "10"))
os.register_at_fork(after_in_child=connections.connection_pools_forget_inherited)
DATABASES = {
    "default": connections.django_database(
        DATABASE_URL,
        pool_max_size=DATABASE_POOL_MAX_SIZE,
        pool_min_size=DATABASE_POOL_MIN_SIZE,
        pool_timeout=DATABASE_POOL_TIMEOUT,
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

# --------------------------------------------------------------------------- apps
SHARED_APPS = [
    "django_tenants",
    "apps.tenants",
    "apps.core",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.chaos",  # the fault-injection harness (manage.py chaos); no models
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.admin",
    "apps.core",
    "apps.ledger",
    "apps.payments",
    "apps.customers",
    "apps.api",
    "apps.webhooks",
    "apps.vendors",
    "apps.billing",
    "apps.checkout",
]
INSTALLED_APPS = list(SHARED_APPS) + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Marketplace"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
TENANT_BASE_SCHEMA = "tenant_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
TENANT_MULTIPROCESSING_MAX_PROCESSES = int(os.environ.get("MIGRATE_PARALLEL", str(os.cpu_count() or 2)))
TENANT_MULTIPROCESSING_CHUNKS = 2
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ROOT_URLCONF = "config.urls_tenant"
SHOW_PUBLIC_IF_NO_TENANT_FOUND = False
# `SET search_path` once per connection and schema switch, not before every cursor (django-tenants
# re-issues it after a rollback, a savepoint rollback, a reconnect or set_tenant). No PgBouncer in
# transaction pooling mode (see PITFALLS): it would break the session-level setting anyway.
TENANT_LIMIT_SET_CALLS = True
# Called with marketplace=... inside the new marketplace's schema, in its creating transaction.
TENANT_PROVISIONERS: list[str] = [
    "apps.ledger.services.ledger_chart_install",
    "apps.payments.services.payments_defaults_install",
    "apps.vendors.services.commission_policy_install",
    "apps.billing.services.billing_defaults_install",
]

MIDDLEWARE = [
    # Before the tenant middleware (the first that touches the database) so that every answer,
    # an unknown host's 404 too, carries Request-Id; it reads neither the database nor the urlconf.
    "apps.core.middleware.RequestIdMiddleware",
    "apps.tenants.middleware.MarketplaceMiddleware",  # first to touch the database (django-tenants)
    "apps.api.middleware.ApiEdgeMiddleware",  # /api/ only: size, depth, card numbers, JSON errors
    "apps.core.middleware.CardNumberFormMiddleware",  # every other POST form: card numbers
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
            ]
        },
    }
]
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django_tenants.files.storage.TenantFileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / ".data" / "media"))
MEDIA_URL = "/media/"
MULTITENANT_RELATIVE_MEDIA_ROOT = "%s"

# --------------------------------------------------------------------------- cache (tenant-prefixed)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "mp",
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
        "TIMEOUT": 300,
    }
}

# --------------------------------------------------------------------------- Celery (ARCHITECTURE section 7)
CELERY_BROKER_URL = connections.celery_broker_url(REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_VISIBILITY_TIMEOUT = 3600
CELERY_TASK_TIME_LIMIT = 600  # below the visibility timeout
CELERY_TASK_SOFT_TIME_LIMIT = 540
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "default")
CELERY_TASK_TENANT_CACHE_SECONDS = 30
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Beat ticks the per-tenant dispatcher; jobs register their own intervals (apps.core.jobs).
TENANT_DISPATCH_INTERVAL = timedelta(seconds=int(os.environ.get("TENANT_DISPATCH_SECONDS", "15")))
DURABLE_TASK_STALE_AFTER = timedelta(seconds=int(os.environ.get("DURABLE_TASK_STALE_SECONDS", "60")))
# How long a running durable task is leased to its worker; past it the sweeper re-sends it.
DURABLE_TASK_LEASE = timedelta(seconds=int(os.environ.get("DURABLE_TASK_LEASE_SECONDS", "300")))
WORKER_HEARTBEAT_SECONDS = 5

# --------------------------------------------------------------------------- payments
# (FIELD_ENCRYPTION_KEYS: read with the secret key, at the top.)
# The first attempt and immediate failovers run inside the request within this budget;
# whatever is left continues in a worker.
PAYMENT_LATENCY_BUDGET_MS = int(os.environ.get("PAYMENT_LATENCY_BUDGET_MS", "8000"))
# How long a started attempt's gateway call may still be running: longer than any adapter's
# timeout (10 s read timeout, the simulator's 30 s latency cap). Until then nothing resolves or
# closes the attempt; an answer later still is a late charge, reversed automatically.
PAYMENT_ATTEMPT_LEASE_SECONDS = int(os.environ.get("PAYMENT_ATTEMPT_LEASE_SECONDS", "90"))
# A checkout session's page can be paid for this long after its creation (a request's
# ``expires_in`` may shorten or lengthen it, within CHECKOUT_SESSION_EXPIRY_MAX_SECONDS).
CHECKOUT_SESSION_EXPIRY_SECONDS = int(os.environ.get("CHECKOUT_SESSION_EXPIRY_SECONDS", str(24 * 3600)))
CHECKOUT_SESSION_EXPIRY_MIN_SECONDS = 60
CHECKOUT_SESSION_EXPIRY_MAX_SECONDS = 7 * 24 * 3600
# The simulator's card fields (/simulator/card-fields) play a processor's hosted fields in the
# demo: the one path a card number may be posted to (test numbers only, never stored or logged).
# Off unless asked for, or in development.
SIMULATOR_CARD_FIELDS = env_bool("SIMULATOR_CARD_FIELDS", DEBUG)
# An authentication (3-D Secure) the customer has not finished this long after it began is closed
# at its gateway and the payment fails with ``authentication_expired``.
AUTHENTICATION_EXPIRY_SECONDS = int(os.environ.get("AUTHENTICATION_EXPIRY_SECONDS", "1800"))
# How long the emailed link to authenticate an off-session payment stays valid.
AUTHENTICATION_LINK_MAX_AGE_SECONDS = int(
    os.environ.get("AUTHENTICATION_LINK_MAX_AGE_SECONDS", str(7 * 86400))
)
CIRCUIT_BREAKER = {
    "consecutive_failures": int(os.environ.get("BREAKER_CONSECUTIVE_FAILURES", "5")),
    "window_seconds": 30,
    "min_requests": 20,
    "error_rate": 0.5,
    "cooldown_seconds": int(os.environ.get("BREAKER_COOLDOWN_SECONDS", "15")),
}

# --------------------------------------------------------------------------- DRF
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "apps.api.permissions.KeyScopePermission",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["apps.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Marketplace payments API",
    "DESCRIPTION": "Storefront REST API. Authenticate with `Authorization: Bearer sk_test_...`; "
    "every POST accepts an `Idempotency-Key` header. Amounts are integers in minor units.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Served from our own static files (drf-spectacular-sidecar): the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.api.schema.strict_request_bodies",
    ],
    # Two models have a `status` with different choices; name each enum (`check --deploy` warns otherwise).
    "ENUM_NAME_OVERRIDES": {
        "VendorStatusEnum": "apps.vendors.models.Vendor.Status",
        "WebhookEndpointStatusEnum": "apps.webhooks.models.WebhookEndpoint.Status",
        "CheckoutSessionStatusEnum": "apps.checkout.models.CheckoutSession.Status",
    },
}
# Per API key (Redis token bucket): this many requests a second, bursts up to API_RATE_LIMIT_BURST.
API_RATE_LIMIT_PER_SECOND = float(os.environ.get("API_RATE_LIMIT_PER_SECOND", "100"))
API_RATE_LIMIT_BURST = int(os.environ.get("API_RATE_LIMIT_BURST", "200"))
# Idempotency records are kept this long; an in-flight one whose request died is taken over after the lock.
API_IDEMPOTENCY_TTL_HOURS = int(os.environ.get("API_IDEMPOTENCY_TTL_HOURS", "24"))
API_IDEMPOTENCY_LOCK_SECONDS = int(os.environ.get("API_IDEMPOTENCY_LOCK_SECONDS", "120"))
# Request bodies above this size and JSON nested deeper than this are refused with a 400.
API_MAX_BODY_BYTES = int(os.environ.get("API_MAX_BODY_BYTES", str(1024 * 1024)))
API_MAX_JSON_DEPTH = int(os.environ.get("API_MAX_JSON_DEPTH", "32"))

# Outbound webhooks (storefronts): attempt n waits min(base * 4**(n-1), cap) after attempt n-1, until
# the window since the event is over; an endpoint that failed for a whole window is disabled.
WEBHOOK_RETRY_BASE_SECONDS = float(os.environ.get("WEBHOOK_RETRY_BASE_SECONDS", "60"))
WEBHOOK_RETRY_CAP_SECONDS = float(os.environ.get("WEBHOOK_RETRY_CAP_SECONDS", str(6 * 3600)))
WEBHOOK_RETRY_WINDOW_SECONDS = float(os.environ.get("WEBHOOK_RETRY_WINDOW_SECONDS", str(24 * 3600)))
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "10"))
# Endpoints on loopback or private addresses: allowed in development (a local receiver), refused in
# production (server-side request forgery).
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", DEBUG)

# --------------------------------------------------------------------------- email
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "payments@localhost")
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(BASE_DIR / ".data" / "mail"))  # filebased backend

# --------------------------------------------------------------------------- logging
LOG_FORMAT = os.environ.get("LOG_FORMAT", "dev" if DEBUG else "json")
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
# Every record is redacted as it is made (config.logging.logging_configure), whatever handles it.
LOGGING_CONFIG = "config.logging.logging_configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "config.logging.ContextFilter"},
        "card_numbers": {"()": "config.logging.CardNumberRedactionFilter"},
    },
    "formatters": {
        "json": {"()": "config.logging.JsonFormatter"},
        "dev": {"()": "config.logging.DevFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT if LOG_FORMAT in ("json", "dev") else "json",
            "filters": ["context", "card_numbers"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Django's own handlers (an unformatted second copy in debug, the dev server's access
        # lines) are replaced: everything goes through the console handler, one line per event.
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        "celery": {"level": LOG_LEVEL},
    },
}

if not DEBUG:
    # Production (`manage.py check --deploy` is clean with these defaults; .ci/run checks it). TLS ends
    # at a proxy that sets X-Forwarded-Proto; plain http is redirected, except the probes (which
    # load balancers and the image's HEALTHCHECK call over http).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    if not SECURE_HSTS_PRELOAD:
        # security.W021 (no HSTS preload): preloading commits the whole registrable domain, every
        # marketplace subdomain included, to https in browsers for months; an operator opts in with
        # DJANGO_SECURE_HSTS_PRELOAD=1 once that holds. Until then the warning is silenced on purpose.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    MIDDLEWARE.insert(3, "whitenoise.middleware.WhiteNoiseMiddleware")
    STORAGES["staticfiles"] = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}
