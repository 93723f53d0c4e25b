"""Settings, read from the environment (12-factor), which a local `.env` may complete. Every
variable is documented in the README and in .env.example."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import dj_database_url
from dotenv import load_dotenv

from sagaproject.routers import ServiceDatabaseRouter

BASE_DIR = Path(__file__).resolve().parent.parent

# Local defaults: the file named by ENV_FILE (the entry points name the project's `.env`, which
# `make run` writes; see sagaproject/envfile.py) fills in the variables the environment leaves
# unset. A variable set in the environment always wins, even an empty one.
ENV_FILE = os.environ.get("ENV_FILE", "")
if ENV_FILE:
    load_dotenv(ENV_FILE, override=False)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off. For local development, run `make run`"
            " once (it writes a .env with DEBUG=1 and a fresh SECRET_KEY) or set DEBUG=1."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on-000000000000"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets, served locally (no CDN)
    # Before django_q: its `qcluster` command wraps django-q2's with a watchdog (sagas.cluster).
    "sagas",
    "django_q",
    "django_prometheus",
    "channels",
    "orders",
    "payments",
    "inventory",
    "shipping",
    "storefront",
    "lab",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (WhiteNoise) before anything that would touch a session or the database.
    "sagaproject.staticfiles.static_files",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "sagaproject.urls"
WSGI_APPLICATION = "sagaproject.wsgi.application"
ASGI_APPLICATION = "sagaproject.asgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# Unset DATABASE_URL: a SQLite file in the project (WAL, immediate transactions, busy timeout).
# SQLite serialises writers; PostgreSQL is the production database.
SQLITE_PATH = Path(os.environ.get("SQLITE_PATH", BASE_DIR / "var" / "db.sqlite3"))
DATABASE_URL = os.environ.get("DATABASE_URL", "")
# The ASGI server (sagaproject/asgi.py sets SAGA_SERVER=asgi) runs each request's sync code in a
# fresh thread, so persistent per-thread connections would leak: it uses a connection pool
# instead. Worker processes fork (django-q2), where a pool breaks: they keep one persistent
# connection each (django-q2 reconnects around every task otherwise, which dominates throughput).
ASGI_SERVER = os.environ.get("SAGA_SERVER") == "asgi"
CONN_MAX_AGE = 0 if ASGI_SERVER else env_int("CONN_MAX_AGE", 60)
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 16)
# DATABASE_URL may lead to PgBouncer in transaction mode (docs/deployment.md, PgBouncer): then
# no server-side cursors and no startup options (set the timeouts on the role), and the LISTEN
# connections, which need a session of their own, go to DATABASE_LISTEN_URL: the same database,
# directly or through a session-mode pool.
PGBOUNCER_TRANSACTION_MODE = env_bool("PGBOUNCER_TRANSACTION_MODE", False)
DATABASE_LISTEN_URL = os.environ.get("DATABASE_LISTEN_URL", "")


def process_role() -> str:
    """What this process is, for PostgreSQL's `pg_stat_activity.application_name`, so that
    connections can be counted per kind of process (docs/deployment.md): `web`, a management
    command's name (`saga_worker`), `qcluster:<queue>` for a service queue's cluster."""
    if ASGI_SERVER:
        return "web"
    args = [Path(arg).name for arg in sys.argv[:2]]
    role = args[1] if len(args) == 2 and args[0] == "manage.py" else (args[0] if args else "")
    queue = os.environ.get("Q_CLUSTER_NAME", "")
    return f"{role}:{queue}" if role == "qcluster" and queue else role or "python"


def sqlite_config(path: Path, test_name: str = "") -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "ENGINE": "django_prometheus.db.backends.sqlite3",
        "NAME": str(path),
        "CONN_MAX_AGE": CONN_MAX_AGE,
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
        },
        "TEST": {"NAME": str(path.with_name(test_name or f"test_{path.name}"))},
    }


def database_config(url: str) -> dict[str, Any]:
    """One database's settings from its URL (empty: the SQLite file SQLITE_PATH). Every alias,
    default or a service's own, gets the same options: timeouts, health checks, and the pool in
    the ASGI server."""
    if not url:
        return sqlite_config(SQLITE_PATH, "test.sqlite3")
    # Health checks guard the web pool's connections (without a round trip: the socket of an idle
    # connection is looked at, sagaproject/postgresql). The workers skip them: a check by query
    # was one more round trip and transaction per task, and a worker drops its connection after
    # any database error anyway (Django closes a connection that saw an error and is no longer
    # usable, at the next task or loop).
    config: dict[str, Any] = dict(
        dj_database_url.parse(url, conn_max_age=CONN_MAX_AGE, conn_health_checks=ASGI_SERVER)
    )
    if config["ENGINE"] == "django.db.backends.sqlite3":
        return sqlite_config(Path(config["NAME"]).resolve())
    if config["ENGINE"] == "django.db.backends.postgresql":
        if ASGI_SERVER:
            # The web tier counts its queries for /metrics (django_db_*); the workers keep the
            # plain engine: counting every statement was about 7 % of a service worker's CPU.
            config["ENGINE"] = "sagaproject.postgresql"
        # Bounded waits: a stuck lock or an abandoned transaction must not hold the queue tables.
        config.setdefault("OPTIONS", {})["options"] = (
            f"-c statement_timeout={env_int('DB_STATEMENT_TIMEOUT_MS', 30000)}"
            f" -c lock_timeout={env_int('DB_LOCK_TIMEOUT_MS', 10000)}"
            f" -c idle_in_transaction_session_timeout={env_int('DB_IDLE_TX_TIMEOUT_MS', 20000)}"
        )
        config["OPTIONS"]["connect_timeout"] = 10
        # Parameters travel beside the statement (no quoting them into its text), and a statement
        # run five times on a connection is prepared there: parsed and planned once.
        config["OPTIONS"]["server_side_binding"] = True
        config["OPTIONS"]["prepare_threshold"] = 5
        if PGBOUNCER_TRANSACTION_MODE:
            # PgBouncer refuses the `options` startup parameter, and a transaction-mode pool
            # hands each transaction any server connection, where a cursor left open would be
            # lost, as would a statement prepared on it.
            del config["OPTIONS"]["options"]
            config["OPTIONS"]["prepare_threshold"] = None
            config["DISABLE_SERVER_SIDE_CURSORS"] = True
        if "PGAPPNAME" not in os.environ:  # libpq's own variable names them otherwise
            config["OPTIONS"]["application_name"] = f"sagas:{process_role()}"[:63]
        if ASGI_SERVER:
            # With CONN_HEALTH_CHECKS on, the pool checks each connection it hands out, so a
            # connection closed by a restart or failover is replaced, not handed out.
            config["OPTIONS"]["pool"] = {"min_size": 2, "max_size": DB_POOL_MAX_SIZE, "timeout": 10}
    return config


DATABASES = {"default": database_config(DATABASE_URL)}

# A database per service, as an option: <SERVICE>_DATABASE_URL set (not empty) gives that
# service's app a database alias of its own, named after it, and a router that sends all of the
# app's tables there (sagaproject/routers.py). The engine's tables, the django-q2 broker, the
# storefront, auth/admin/sessions and every service left unset stay in `default`.
# docs/architecture.md §8 says what is atomic with what.
SERVICE_APPS = ("orders", "payments", "inventory", "shipping")
SERVICE_DATABASE_URLS = {
    app: url
    for app in SERVICE_APPS
    if (url := os.environ.get(f"{app.upper()}_DATABASE_URL", "").strip())
}
DATABASES.update({app: database_config(url) for app, url in SERVICE_DATABASE_URLS.items()})


def require_distinct_databases(databases: dict[str, dict[str, Any]]) -> None:
    """Two aliases on one database would share one migration record: the second alias's tables
    would count as migrated and never be made. Refused at startup instead."""
    seen: dict[tuple[str, str, str], str] = {}
    for alias, config in databases.items():
        where = (str(config.get("HOST") or ""), str(config.get("PORT") or ""), str(config["NAME"]))
        if where in seen:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"the {seen[where]} and {alias} databases are one and the same: give each service"
                " a database of its own, or leave its <SERVICE>_DATABASE_URL unset to keep its"
                " tables in DATABASE_URL"
            )
        seen[where] = alias


require_distinct_databases(DATABASES)
DATABASE_ROUTERS = [ServiceDatabaseRouter(app, app) for app in SERVICE_DATABASE_URLS]
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

# --- Static files (served by WhiteNoise from every web process) -------------------------------
# DEBUG off: `collectstatic` copies every app's files into STATIC_ROOT under content-hashed names
# with gzip copies beside them, and WhiteNoise serves those with a far-future cache header; a page
# naming a file that was not collected fails loudly. DEBUG on: the files are served from the apps
# as they are, re-read on every request.
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "var" / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Fixed when the settings load (WhiteNoise would read DEBUG later, which tests override).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Cache (django-q2 keeps cluster stats here; local memory would break qinfo) -------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:  # shared by every process on this host without touching the database
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": os.environ.get("CACHE_DIR", str(BASE_DIR / "var" / "cache")),
        }
    }


# --- Channels ---------------------------------------------------------------------------------
def channel_layers(redis_url: str) -> dict[str, Any]:
    if not redis_url:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # A consumer waits for messages with BZPOPMIN for 5 s, and redis-py 8's default socket timeout
    # is also 5 s: an idle consumer's read timed out and the consumer died
    # (redis.exceptions.TimeoutError). Reads must be allowed to outlast the wait.
    host = {"address": redis_url, "socket_timeout": 15, "socket_connect_timeout": 5}
    return {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [host]}}
    }


CHANNEL_LAYERS = channel_layers(REDIS_URL)

# --- REST framework ---------------------------------------------------------------------------
# Orders placed per user: a DRF rate ("100/second", "20/minute"); empty turns the limit off.
ORDER_THROTTLE_RATE = os.environ.get("ORDER_THROTTLE_RATE", "100/second").strip()
API_DOCS_PUBLIC = env_bool("API_DOCS_PUBLIC", True)  # off: /api/schema/ and /api/docs/ need a user
METRICS_REQUIRE_STAFF = env_bool("METRICS_REQUIRE_STAFF", False)  # on: /metrics needs staff
# Seconds a web process remembers an API token's user (sagas.api.authentication): one query and
# one transaction fewer per request; a token revoked elsewhere still works that long. 0: off.
API_TOKEN_CACHE_SECONDS = env_float("API_TOKEN_CACHE_SECONDS", 5.0)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "sagas.api.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["sagas.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "sagas.api.pagination.StrictLimitOffsetPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"orders": ORDER_THROTTLE_RATE or None},
    "EXCEPTION_HANDLER": "sagas.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Order saga orchestrator",
    "DESCRIPTION": (
        "Orders placed as sagas across the Order, Payment, Inventory and Shipping services. "
        "Authenticate with `Authorization: Token <key>`. Every error has the shape "
        '`{"code", "message", "fields"?}` with a stable `code`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["sagas.api.permissions.DocsAccess"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "sagas.api.schema.close_request_objects",
    ],
    "ENUM_NAME_OVERRIDES": {
        "SagaStatusEnum": "sagas.api.serializers.SAGA_STATUSES",
        "OrderStatusEnum": "storefront.api.serializers.ORDER_STATUSES",
        "AcceptedStatusEnum": "storefront.api.serializers.ACCEPTED_STATUSES",
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 256 * 1024)

# --- The saga engine (read through sagas.config, never directly) -------------------------------
SAGA_LEASE_SECONDS = env_float("SAGA_LEASE_SECONDS", 10.0)
SAGA_CLAIM_BATCH = env_int("SAGA_CLAIM_BATCH", 50)
SAGA_IDLE_POLL_SECONDS = env_float("SAGA_IDLE_POLL_SECONDS", 1.0)
SAGA_STEP_DEADLINE_SECONDS = env_float("SAGA_STEP_DEADLINE_SECONDS", 20.0)
SAGA_MAX_ATTEMPTS = env_int("SAGA_MAX_ATTEMPTS", 5)
SAGA_RETRY_INITIAL_SECONDS = env_float("SAGA_RETRY_INITIAL_SECONDS", 0.2)
SAGA_RETRY_MAX_SECONDS = env_float("SAGA_RETRY_MAX_SECONDS", 10.0)
SAGA_COMPENSATION_MAX_ATTEMPTS = env_int("SAGA_COMPENSATION_MAX_ATTEMPTS", 8)
# Housekeeping (sagas.housekeeping): finished sagas older than the retention are purged in
# batches every SAGA_PURGE_EVERY_MINUTES by the engine's own django-q2 cluster.
SAGA_RETENTION_DAYS = env_float("SAGA_RETENTION_DAYS", 30.0)
SAGA_PURGE_BATCH = env_int("SAGA_PURGE_BATCH", 500)
SAGA_PURGE_EVERY_MINUTES = env_int("SAGA_PURGE_EVERY_MINUTES", 10)

# --- The live dashboard (read through sagas.config) -----------------------------------------
# One tailer per web process reads the event log once per DASHBOARD_POLL_SECONDS while it has
# clients; each client gets
# at most one websocket frame per DASHBOARD_FRAME_SECONDS. With REDIS_URL one tailer serves the
# whole site through the Redis channel layer.
DASHBOARD_POLL_SECONDS = env_float("DASHBOARD_POLL_SECONDS", 0.25)
DASHBOARD_FRAME_SECONDS = env_float("DASHBOARD_FRAME_SECONDS", 0.25)

# --- django-q2: one queue (cluster) per service ---------------------------------------------
# handler timeout < q2 retry < step deadline: a task whose worker died is redelivered by q2
# before the orchestrator gives up waiting and re-sends the same command.
Q_TIMEOUT = env_int("Q_TIMEOUT", 10)
Q_RETRY = env_int("Q_RETRY", 15)
# Carried tasks that wait together at a pusher go on as one task of up to this many, performed
# in one transaction (docs/architecture.md §3, "Merged under load"); 1: each task alone. Fewer
# where tasks have lately been slow: a merge must fit in a quarter of Q_TIMEOUT.
Q_MERGE_TASKS = env_int("Q_MERGE_TASKS", 8)
SERVICE_QUEUES = ("orders", "payments", "inventory", "shipping")
# The engine's own queue: the housekeeping schedule runs there, never on a service's queue (a
# purge run takes minutes; a service handler has Q_TIMEOUT seconds). One worker is plenty; the
# run stops itself at half the timeout and the next run goes on where it stopped.
HOUSEKEEPING_QUEUE = "housekeeping"
HOUSEKEEPING_TIMEOUT = 300
Q_CLUSTER = {
    "name": "sagaproject",
    "orm": "default",
    # SKIP LOCKED claims and LISTEN/NOTIFY wake-ups on PostgreSQL; the stock ORM broker on SQLite.
    "broker_class": "sagas.broker.PostgresBroker",
    "workers": env_int("Q_WORKERS", 2),
    "timeout": Q_TIMEOUT,
    "retry": Q_RETRY,
    "max_attempts": env_int("Q_MAX_ATTEMPTS", 5),
    "bulk": env_int("Q_BULK", 4),
    "queue_limit": env_int("Q_QUEUE_LIMIT", 4),
    "poll": env_float("Q_POLL_SECONDS", 0.05),
    # Commands carry the saga's data: compressed, a queue row writes about half the WAL.
    "compress": True,
    "save_limit": -1,  # successes leave no row; failures are always saved and shown in the admin
    "catch_up": False,
    "label": "Service queues",
    "ALT_CLUSTERS": {
        **{queue: {} for queue in SERVICE_QUEUES},
        HOUSEKEEPING_QUEUE: {
            "broker_class": "sagas.broker.PollingBroker",
            "workers": 1,
            "timeout": HOUSEKEEPING_TIMEOUT,
            "retry": HOUSEKEEPING_TIMEOUT + 60,
            "max_attempts": 1,  # a failed run is kept for operators; the schedule runs it again
            "bulk": 1,
            "queue_limit": 1,
            "poll": 1.0,
        },
    },
}

# --- Logging: one JSON object per line ------------------------------------------------------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": LOG_LEVEL if LOG_LEVEL != "DEBUG" else "INFO"},
        "django_q": {"level": os.environ.get("Q_LOG_LEVEL", "WARNING").upper()},
    },
}

# --- Production hardening (on when DEBUG is off) --------------------------------------------
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
