"""Django settings: derived from the Settings object only (emgapiv2/config.py)."""

import os
from datetime import timedelta

import dj_database_url

from emgapiv2.config import get_settings
from emgapiv2.keys import read_or_create_secret

config = get_settings()
# Everything the platform writes (database, blobs, logs, work directories, secrets) is its owner's
# alone: the data directory is 0700 and new files are created 0600/0700.
os.umask(0o077)
config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
# no read or write for anyone else; the group's x stays: with an ACL (scripts/pg.sh lets postgres
# traverse) those bits are the ACL's mask, and clearing them would lock PostgreSQL out
_mode = config.data_dir.stat().st_mode & 0o777
if _mode & 0o067:
    config.data_dir.chmod(_mode & 0o710 | 0o700)

# Every process that may talk to Prefect (API, worker, management commands) must know the server;
# without PREFECT_API_URL Prefect silently starts a temporary server of its own per process.
os.environ.setdefault("PREFECT_API_URL", config.prefect.api_url)

SECRET_KEY = (
    config.secret_key.get_secret_value()
    if config.secret_key
    else read_or_create_secret(config.data_dir, "django-secret-key")
)
DEBUG = config.debug
ALLOWED_HOSTS = config.allowed_hosts

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",
    "axes",  # throttles admin logins (django-axes)
    "calculations",
    "workflows",  # registers the Prefect orchestrator; workflows uses calculations, never the reverse
]

MIDDLEWARE = [
    "emgapiv2.metrics.RequestMetricsMiddleware",  # outermost: it times whatever answers, a 413 too
    "emgapiv2.middleware.RequestBoundsMiddleware",  # first: nothing reads a body before it is bounded
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "calculations.idempotency.IdempotencyMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]

# The admin's password login is throttled: after `failure_limit` wrong passwords for one user from
# one address, that pair is locked out for `cooloff_minutes` (the right password too). API tokens
# are 32 random bytes: guessing them is not a login.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = config.admin_login.failure_limit
AXES_COOLOFF_TIME = timedelta(minutes=config.admin_login.cooloff_minutes)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "emgapiv2.lockout.locked_out"

ROOT_URLCONF = "emgapiv2.urls"
WSGI_APPLICATION = "emgapiv2.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

if config.db.url:
    DATABASES = {"default": dj_database_url.parse(config.db.url, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(config.data_dir / "db.sqlite3"),
            "OPTIONS": {
                # IMMEDIATE: writers take the lock at BEGIN, so two transactions never deadlock
                # upgrading a read lock; WAL lets readers run beside the one writer.
                "transaction_mode": "IMMEDIATE",
                "timeout": config.db.sqlite_timeout_seconds,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # kept across requests, as PostgreSQL's: opening it (and its PRAGMAs) for every request
            # was a tenth of a GET's CPU (bench/README.md, read load)
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = config.data_dir / "static"
STATIC_ROOT.mkdir(exist_ok=True)
DATA_UPLOAD_MAX_MEMORY_SIZE = config.max_json_bytes  # emgapiv2/middleware.py answers first, in JSON
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# uploads spool under the data directory (not the system's): private, and swept (workflows/worker/sweeper.py)
config.spool_dir.mkdir(mode=0o700, exist_ok=True)
FILE_UPLOAD_TEMP_DIR = str(config.spool_dir)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "calculations": {"handlers": ["console"], "level": "INFO"},
        "workflows": {"handlers": ["console"], "level": "INFO"},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "httpx": {"level": "WARNING"},
    },
}
