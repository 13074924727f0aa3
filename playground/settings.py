"""Settings for CodeCarbon Playground.

One module, configured by environment variables. Every variable is listed with its
default in README.md; a bad value stops start-up with ImproperlyConfigured instead of
being silently replaced.
"""

import os
import socket
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {raw!r}")


def env_number[T: (int, float)](name: str, default: T, kind: type[T], minimum: T) -> T:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a {kind.__name__}, not {raw!r}") from None
    if value < minimum or value != value:  # value != value catches NaN
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {raw!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

# Where the SQLite database, the generated secret key and the wake-up pipe live.
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var")))
SECRET_KEY_FILE = DATA_DIR / "secret_key"

# From the environment, else the key `make` generated, so that every command in README
# (runsnippet, createsuperuser) works as written after `make run`.
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY and SECRET_KEY_FILE.is_file():
    SECRET_KEY = SECRET_KEY_FILE.read_text().strip()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            f"Set SECRET_KEY, or put one in {SECRET_KEY_FILE} (`make setup` does), "
            "or DEBUG=1 for a development key."
        )
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_tasks_db",
    "runs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "runs.middleware.DatabaseBusyMiddleware",
]

ROOT_URLCONF = "playground.urls"

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

WSGI_APPLICATION = "playground.wsgi.application"

# SQLite by default (in DATA_DIR, created by `make`); PostgreSQL from one URL.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
        conn_max_age=600,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web processes read while a worker writes progress; IMMEDIATE
    # transactions make writers queue for the lock instead of failing mid-way.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # Tests that start real worker processes need a database file they can open.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

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
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

SESSION_COOKIE_AGE = 60 * 60 * 24 * 365  # history belongs to the browser for a year
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Scripts, styles, images and connections from this site only; no inline script, no
# eval. Inline style attributes stay allowed: CodeMirror and htmx set element styles,
# and a style cannot run code.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
X_FRAME_OPTIONS = "DENY"
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 60 * 60 * 24 * 30 if HTTPS else 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
# HSTS for subdomains and the preload list commit the operator's whole domain: their
# call, not ours.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
if not HTTPS:
    # Served over plain HTTP on loopback, or behind a TLS proxy that sets HTTPS=1.
    SILENCED_SYSTEM_CHECKS += ["security.W004", "security.W008", "security.W012", "security.W016"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # CodeCarbon logs every measurement at INFO; we report its figures ourselves.
        "codecarbon": {"level": "ERROR", "propagate": True},
    },
}

# --- The sandbox -----------------------------------------------------------------

# Wall-clock limit of one run, in seconds (name kept from the original design).
EXECUTION_TIMEOUT = env_number("EXECUTION_TIMEOUT", 10.0, float, 0.1)
MAX_EXECUTION_TIMEOUT = env_number("MAX_EXECUTION_TIMEOUT", 60.0, float, 0.1)
SANDBOX_MEMORY_MB = env_number("SANDBOX_MEMORY_MB", 512, int, 32)
SANDBOX_MAX_PROCESSES = env_number("SANDBOX_MAX_PROCESSES", 64, int, 4)
SANDBOX_OUTPUT_BYTES = env_number("SANDBOX_OUTPUT_BYTES", 256 * 1024, int, 1024)
SANDBOX_DISK_MB = env_number("SANDBOX_DISK_MB", 64, int, 1)
SANDBOX_MAX_FILES = env_number("SANDBOX_MAX_FILES", 10_000, int, 16)
# CPUs a run may use at once (a cgroup quota); the rest stay free for the web server.
SANDBOX_CPUS = env_number("SANDBOX_CPUS", 1.0, float, 0.1)
# A run for an idle worker on this machine is handed to it directly (runs.queue.direct.protocol),
# before its row is written; off: every run goes through the queue table, and workers
# listen for no offers.
HANDOVER = env_bool("HANDOVER", True)
# Sandboxes each worker keeps started ahead of its next runs (0: each run starts its own).
SANDBOX_STANDBY = env_number("SANDBOX_STANDBY", 2, int, 0)
if SANDBOX_STANDBY > 8:
    raise ImproperlyConfigured("SANDBOX_STANDBY must be at most 8.")
MAX_CODE_BYTES = env_number("MAX_CODE_BYTES", 64 * 1024, int, 1)
# What a run may read on its standard input. At most 1 MiB: it is stored with every run,
# and a comparison's rounds copy it into each of their runs.
MAX_STDIN_BYTES = env_number("MAX_STDIN_BYTES", 64 * 1024, int, 0)
if MAX_STDIN_BYTES > 1024 * 1024:
    raise ImproperlyConfigured("MAX_STDIN_BYTES must be at most 1048576 (1 MiB).")
SANDBOX_MODE = env_str("SANDBOX_MODE", "auto")
if SANDBOX_MODE not in {"auto", "bubblewrap", "rlimits"}:
    raise ImproperlyConfigured("SANDBOX_MODE must be auto, bubblewrap or rlimits.")
# Hand the host's NVIDIA devices to snippets (only where /dev/nvidia* exists).
SANDBOX_GPU = env_bool("SANDBOX_GPU", True)
# The unprivileged account snippets run as when the server runs as root.
SANDBOX_USER = env_str("SANDBOX_USER", "ccp-sandbox")
# The environments snippets run in (an interpreter and a pinned package set each) are
# declared in SNIPPET_ENVIRONMENTS and built by `manage.py snippetenv` into
# SNIPPET_ENVS_DIR, which SANDBOX_USER must be able to reach.
SNIPPET_ENVIRONMENTS = env_str("SNIPPET_ENVIRONMENTS", str(BASE_DIR / "environments.toml"))
SNIPPET_ENVS_DIR = env_str(
    "SNIPPET_ENVS_DIR",
    "/opt/codecarbon-playground/envs" if os.geteuid() == 0 else str(BASE_DIR / ".snippet-envs"),
)

# --- Measurement -----------------------------------------------------------------

CODECARBON_COUNTRY = env_str("CODECARBON_COUNTRY", "IND").upper()
CODECARBON_REGION = env_str("CODECARBON_REGION", "").lower()
LIVE_SAMPLE_SECONDS = env_number("LIVE_SAMPLE_SECONDS", 0.5, float, 0.1)
# The line profiler's sampling interval, in milliseconds of the snippet's CPU time
# (0 turns it off).
PROFILE_INTERVAL_MS = env_number("PROFILE_INTERVAL_MS", 5.0, float, 0.0)
# The power of one busy hardware thread, in watts, for an operator who knows the host
# (0: CodeCarbon's figure for the CPU model). It is passed to CodeCarbon too, which then
# uses it instead of an energy counter: set it only where none is readable.
CPU_WATTS_PER_THREAD = env_number("CPU_WATTS_PER_THREAD", 0.0, float, 0.0)

# --- The queue -------------------------------------------------------------------

# The name this machine's runs, baselines and workers carry (one baseline per host).
HOST_NAME = env_str("HOST_NAME", socket.gethostname())
WORKER_POLL_INTERVAL = env_number("WORKER_POLL_INTERVAL", 0.1, float, 0.0)
WORKER_HEARTBEAT_SECONDS = env_number("WORKER_HEARTBEAT_SECONDS", 2.0, float, 0.1)
# An idle worker runs the control workload this often (host stability, runs.models).
CONTROL_INTERVAL_SECONDS = env_number("CONTROL_INTERVAL_SECONDS", 300.0, float, 10.0)
# A worker silent for this long is considered dead, and its running run is failed.
WORKER_STALE_SECONDS = env_number("WORKER_STALE_SECONDS", 10.0, float, 0.5)
# How long POST /run waits for its run before answering 202 with the run's URL, and
# how many requests of one web process may wait at once (the rest get 202 at once, so
# waiting clients never take every server thread).
API_WAIT_SECONDS = env_number("API_WAIT_SECONDS", 70.0, float, 0.0)
API_MAX_WAITING = env_number("API_MAX_WAITING", 4, int, 0)
# How long the playground's form waits for a run before showing it queued or running.
PAGE_WAIT_SECONDS = env_number("PAGE_WAIT_SECONDS", 0.5, float, 0.0)

# --- Retention (runs/models/retention.py) --------------------------------------------------

RUN_RETENTION_DAYS = env_number("RUN_RETENTION_DAYS", 30, int, 1)
RUN_OUTPUT_RETENTION_DAYS = env_number("RUN_OUTPUT_RETENTION_DAYS", 7, int, 1)

# --- Limits per client (an address: see runs/clients.py) ----------------------------

LIMIT_RUNS_PER_MINUTE = env_number("LIMIT_RUNS_PER_MINUTE", 60, int, 1)
LIMIT_QUEUED_RUNS_PER_CLIENT = env_number("LIMIT_QUEUED_RUNS_PER_CLIENT", 60, int, 1)
LIMIT_CPU_SECONDS_PER_HOUR = env_number("LIMIT_CPU_SECONDS_PER_HOUR", 900.0, float, 1.0)
# Bytes one client's runs may store a day (UTC): code, input, output, figures.
LIMIT_STORED_BYTES_PER_DAY = env_number("LIMIT_STORED_BYTES_PER_DAY", 50_000_000, int, 1)
LIMIT_QUEUED_RUNS_TOTAL = env_number("LIMIT_QUEUED_RUNS_TOTAL", 1000, int, 1)
LIMIT_ADMIN_LOGINS_PER_HOUR = env_number("LIMIT_ADMIN_LOGINS_PER_HOUR", 10, int, 1)
# Proxies whose X-Forwarded-For is believed: by default only the front on this machine.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", ["127.0.0.1/32", "::1/128"])
# A secret the front sets on every request it forwards (X-Front-Token): where set, a
# trusted proxy's X-Forwarded-For is believed only with it, so a local process that
# reaches gunicorn without the front cannot pass for another client. bin/serve makes one
# for its nginx at every start; behind a proxy of yours (FRONT=none), have it set it.
FRONT_TOKEN = env_str("FRONT_TOKEN", "")
