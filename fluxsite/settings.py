"""Fluxsite settings: the one settings file, reading only the environment.

Defaults run on a laptop with nothing set (SQLite under var/, local files, django-q2's
database broker, console email, the sandbox stand-ins for every vendor). Production is
switched on by environment variables, documented one by one in .env.example.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from fluxsite.env import (
    database_from_url,
    env_bool,
    env_decimal_str,
    env_int,
    env_list,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("FLUXSITE_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)
TESTING = "pytest" in sys.modules

# --- Core ---------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_secret("SECRET_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not DEBUG:
    missing = [
        name for name, value in (("SECRET_KEY", SECRET_KEY), ("ALLOWED_HOSTS", ALLOWED_HOSTS)) if not value
    ]
    if missing:
        raise ImproperlyConfigured(
            f"DEBUG is off, so {' and '.join(missing)} must be set in the environment (see .env.example)."
        )
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 random characters when DEBUG is off.")
else:
    SECRET_KEY = SECRET_KEY or "django-insecure-local-development-only-key-never-use-this-in-production-0123"
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["127.0.0.1", "localhost", "[::1]", "testserver"]

# Where the site is reachable from the outside: webhooks and e-mail links are built on it.
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [SITE_URL] if SITE_URL.startswith("https://") else [])

INSTALLED_APPS = [
    # Django's admin with our site (backoffice.site.FluxsiteAdminSite): the overview and support pages.
    "backoffice.apps.BackofficeAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "django_q",
    "storages",
    "axes",
    "fluxsite.accounts",
    "fluxsite",
    "training",
    "models_app",
    "generations",
    "billing",
    "api",
    "backoffice",
    "sandbox",
    "sandbox.replicate",
    "sandbox.huggingface",
    "sandbox.stripe",
]

MIDDLEWARE = [
    "fluxsite.middleware.RequestIdMiddleware",  # first: every answer and log line has its id
    "django.middleware.security.SecurityMiddleware",
    "fluxsite.middleware.ContentSecurityPolicyMiddleware",
    "fluxsite.middleware.RejectNulBytesMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "fluxsite.middleware.TimezoneMiddleware",
    "fluxsite.middleware.SessionIdleTimeoutMiddleware",
    "fluxsite.middleware.PrivateCacheControlMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into our 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "fluxsite.urls"
WSGI_APPLICATION = "fluxsite.wsgi.application"
ASGI_APPLICATION = "fluxsite.asgi.application"

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
                "fluxsite.context_processors.site",
            ],
        },
    },
]

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"

# --- Rate limits -------------------------------------------------------------------------------------
# Logins (the site's and the admin's) by django-axes, in the shared cache. The lockout is keyed on
# the account and the client address together: guessing one account stops, yet nobody can lock
# an account out everywhere, or everyone behind one address (an office, a carrier's NAT).
# fluxsite.accounts.backends.UserBackend is ModelBackend with its per-request user read compiled once.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "fluxsite.accounts.backends.UserBackend"]
# With Redis the attempts live in the shared cache; without it (the embedded defaults) in the
# database, which every process shares too (a per-process memory cache would not be a limit).
AXES_HANDLER = (
    "axes.handlers.cache.AxesCacheHandler"
    if env_str("REDIS_URL")
    else "axes.handlers.database.AxesDatabaseHandler"
)
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "fluxsite.ratelimits.axes_username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "fluxsite.ratelimits.login_locked_out"
AXES_VERBOSE = False
# Everything else (fluxsite/ratelimits.py), per user or client address: django-ratelimit's rate syntax.
RATELIMITS = {
    "signup": env_str("RATELIMIT_SIGNUP", "5/h"),
    "password_reset": env_str("RATELIMIT_PASSWORD_RESET", "5/h"),
    "upload": env_str("RATELIMIT_UPLOAD", "120/m"),
    "training_start": env_str("RATELIMIT_TRAINING_START", "20/h"),
    "generate": env_str("RATELIMIT_GENERATE", "30/m"),
    "caption_start": env_str("RATELIMIT_CAPTION_START", "20/h"),
    "checkout": env_str("RATELIMIT_CHECKOUT", "20/h"),
    "webhook_refusal_log": env_str("RATELIMIT_WEBHOOK_REFUSAL_LOG", "30/m"),
}
LOGIN_REDIRECT_URL = "training:list"
LOGOUT_REDIRECT_URL = "accounts:login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Database ---------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
else:
    # WAL and a busy timeout let the web server and the django-q2 worker share one file;
    # IMMEDIATE transactions take the write lock up front instead of failing on upgrade.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(VAR_DIR / "db.sqlite3")),
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # One file per test process, so parallel runs never share a test database.
            "TEST": {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and queue --------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "fluxsite.cache.RedisCache", "LOCATION": REDIS_URL}
    }  # Django's, reusing its client
    # Sessions read from the shared cache and written through to the database (so a flushed cache
    # signs nobody out): one query less on every signed-in page.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        # django-q2's database broker keeps each cluster's heartbeat (its Stat) in a cache; a
        # per-process memory cache would hide the worker's from the web and `queue_status`, so
        # it goes to files every process on this machine shares (Redis keeps its own).
        "queue_stats": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "queue-stats"),
        },
    }

# django-q2: `timeout` must stay below `retry`, or a long task is delivered again while it
# still runs; max_attempts bounds redelivery (0 would mean forever). A worker killed by the
# OS is not counted by django-q2, so our pipeline keeps its own attempt counter on each job.
Q_CLUSTER = {
    "name": "fluxsite",
    "workers": env_int("Q_WORKERS", 2),
    "recycle": 200,
    "timeout": env_int("Q_TIMEOUT", 600),
    "retry": env_int("Q_RETRY", 720),
    "max_attempts": env_int("Q_MAX_ATTEMPTS", 3),
    "catch_up": False,
    "save_limit": 1000,
    "ack_failures": True,
    "label": "Task queue",
    "poll": 0.5,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["cache"] = "queue_stats"
# A cluster whose last heartbeat is older than this is reported stale (queue_status exits 1,
# /healthz/ready says "degraded"). django-q2 beats about every second.
Q_HEARTBEAT_STALE_SECONDS = env_int("Q_HEARTBEAT_STALE_SECONDS", 30)

# --- Static and media files ---------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# Object storage: S3 or Cloudflare R2 when a bucket is named, local files otherwise.
# "default" holds public things (generated images, thumbnails); "private" holds datasets and
# weights and only ever hands out expiring signed URLs, so it never gets a custom domain.
S3_BUCKET = env_str("S3_BUCKET")
S3_ENDPOINT_URL = env_str("S3_ENDPOINT_URL")  # https://<account>.r2.cloudflarestorage.com for R2
S3_REGION = env_str("S3_REGION", "auto")
S3_ACCESS_KEY_ID = env_secret("S3_ACCESS_KEY_ID")
S3_SECRET_ACCESS_KEY = env_secret("S3_SECRET_ACCESS_KEY")
S3_PUBLIC_DOMAIN = env_str("S3_PUBLIC_DOMAIN")
SIGNED_URL_SECONDS = env_int("SIGNED_URL_SECONDS", 3600)

_static_backend = (
    "django.contrib.staticfiles.storage.StaticFilesStorage"
    if TESTING or DEBUG
    else "whitenoise.storage.CompressedManifestStaticFilesStorage"
)
if S3_BUCKET:
    _s3_common = {
        "bucket_name": S3_BUCKET,
        "endpoint_url": S3_ENDPOINT_URL or None,
        "region_name": S3_REGION,
        "access_key": S3_ACCESS_KEY_ID or None,
        "secret_key": S3_SECRET_ACCESS_KEY or None,
        "signature_version": "s3v4",
        "addressing_style": "path",
        "file_overwrite": False,
        "default_acl": None,
    }
    STORAGES = {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                **_s3_common,
                "location": "public",
                "custom_domain": S3_PUBLIC_DOMAIN or None,
                "querystring_auth": not S3_PUBLIC_DOMAIN,
                "querystring_expire": SIGNED_URL_SECONDS,
            },
        },
        "private": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                **_s3_common,
                "location": "private",
                "querystring_auth": True,
                "querystring_expire": SIGNED_URL_SECONDS,
            },
        },
        "staticfiles": {"BACKEND": _static_backend},
    }
else:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "private": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(MEDIA_ROOT / "private"), "base_url": None},
        },
        "staticfiles": {"BACKEND": _static_backend},
    }

# --- Uploads and datasets -----------------------------------------------------------------------
DATASET_MIN_IMAGES = env_int("DATASET_MIN_IMAGES", 10)
DATASET_MAX_IMAGES = env_int("DATASET_MAX_IMAGES", 50)
DATASET_MAX_FILE_BYTES = env_int("DATASET_MAX_FILE_BYTES", 30 * 1024 * 1024)
DATASET_MAX_TOTAL_BYTES = env_int("DATASET_MAX_TOTAL_BYTES", 600 * 1024 * 1024)
DATASET_MAX_PIXELS = env_int("DATASET_MAX_PIXELS", 40_000_000)
DATASET_LONG_SIDE = env_int("DATASET_LONG_SIDE", 1024)
# The upload page resizes photos to this long side before sending them (0: send them as they are).
DATASET_BROWSER_RESIZE_LONG_SIDE = env_int("DATASET_BROWSER_RESIZE_LONG_SIDE", 2 * DATASET_LONG_SIDE)
# Photos too small or too narrow to learn from are refused before decoding.
DATASET_MIN_SIDE = env_int("DATASET_MIN_SIDE", 256)
DATASET_MAX_ASPECT = env_int("DATASET_MAX_ASPECT", 4)
# What decoding one file may cost, enforced by the operating system on a child process.
DATASET_DECODE_MAX_MEMORY_MB = env_int("DATASET_DECODE_MAX_MEMORY_MB", 1024)
DATASET_DECODE_MAX_CPU_SECONDS = env_int("DATASET_DECODE_MAX_CPU_SECONDS", 10)
DATASET_DECODE_MAX_WALL_SECONDS = env_int("DATASET_DECODE_MAX_WALL_SECONDS", 20)
# A ZIP may bring at most this many members (images and captions) and caption bytes.
DATASET_ZIP_MAX_MEMBERS = env_int("DATASET_ZIP_MAX_MEMBERS", 4 * DATASET_MAX_IMAGES)
DATASET_ZIP_MAX_CAPTION_BYTES = env_int("DATASET_ZIP_MAX_CAPTION_BYTES", 1024 * 1024)
# Hosts the API may fetch a dataset's ZIP from (POST /api/v1/trainings/{id}/photos/from-url), e.g.
# "files.example.com,*.example-cdn.net"; empty turns the feature off. Over https and to public
# addresses only, outside the sandbox (fluxsite/integrations/zip_urls.py).
TRAINING_ZIP_URL_HOSTS = env_list("TRAINING_ZIP_URL_HOSTS", [])
# Importing captions (a ZIP of .txt files or a CSV): refused before reading when larger, or when
# it holds more files or rows than this.
DATASET_CAPTIONS_IMPORT_MAX_BYTES = env_int("DATASET_CAPTIONS_IMPORT_MAX_BYTES", 2 * 1024 * 1024)
DATASET_CAPTIONS_IMPORT_MAX_ROWS = env_int("DATASET_CAPTIONS_IMPORT_MAX_ROWS", 20 * DATASET_MAX_IMAGES)
# `manage.py storage_prune`: training ZIPs are kept this many days after they are built (never one a
# queued or running training needs; a training started later builds its ZIP again), and temporary
# files (images staged to start a generation from, workers' scratch folders) this many days.
DATASET_ZIP_KEEP_DAYS = env_int("DATASET_ZIP_KEEP_DAYS", 7)
TEMP_FILES_KEEP_DAYS = env_int("TEMP_FILES_KEEP_DAYS", 2)
DATA_UPLOAD_MAX_NUMBER_FILES = DATASET_MAX_IMAGES + 10
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None

# --- Vendors: real services when tokens are set, the sandbox otherwise ----------------------------
# huggingface_hub reads these once, when the app registry imports it right after this module: they
# must be set here (a test conftest runs too late). No usage reports to the Hub, no progress bars in
# logs; tests keep the SDK's cache out of the home folder.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
if TESTING:
    import tempfile

    os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="fluxsite-hf-"))
REPLICATE_API_TOKEN = env_secret("REPLICATE_API_TOKEN")
REPLICATE_WEBHOOK_SECRET = env_secret("REPLICATE_WEBHOOK_SECRET")
HF_TOKEN = env_secret("HF_TOKEN")
STRIPE_SECRET_KEY = env_secret("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_secret("STRIPE_WEBHOOK_SECRET")
_any_token = any((REPLICATE_API_TOKEN, HF_TOKEN, STRIPE_SECRET_KEY))

# Sandbox mode: the local stand-ins under /sandbox/ answer for Replicate, Hugging Face and Stripe.
# It fakes payments and trainings, so it is refused here when DEBUG is off: loading the settings
# fails, and gunicorn and the worker refuse to start, not only `manage.py check` (fluxsite.E001
# stays as a second guard for settings changed after start-up).
SANDBOX_MODE = env_bool("SANDBOX_MODE", DEBUG and not _any_token)
if SANDBOX_MODE and not DEBUG:
    raise ImproperlyConfigured(
        "SANDBOX_MODE is on while DEBUG is off: the sandbox must never serve in production. "
        "Set SANDBOX_MODE=false and the vendor tokens (see .env.example)."
    )
# Outbound webhooks (the account page's "Webhooks" section; fluxsite.accounts.services.webhooks). Private,
# loopback and link-local destinations are refused unless this is on: only in the sandbox/DEBUG.
WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS = env_bool("WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS", SANDBOX_MODE or DEBUG)
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 6)  # the first send and five retries
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
SANDBOX_TRAINING_SECONDS = env_int("SANDBOX_TRAINING_SECONDS", 60)  # a demo training's length
SANDBOX_PREDICTION_SECONDS = env_int("SANDBOX_PREDICTION_SECONDS", 2)  # a demo prediction's length
SANDBOX_WEBHOOK_DELAY_SECONDS = env_int("SANDBOX_WEBHOOK_DELAY_SECONDS", 0)  # network latency to imitate
# Where the Stripe stand-in delivers its webhooks; empty means f"{SITE_URL}/billing/webhooks/stripe/",
# worked out at send time (tests move SITE_URL to their live server).
SANDBOX_STRIPE_WEBHOOK_URL = env_str("SANDBOX_STRIPE_WEBHOOK_URL")
# Where the Hugging Face stand-in keeps uploaded files (content-addressed blobs).
SANDBOX_HF_ROOT = Path(env_str("SANDBOX_HF_ROOT", str(VAR_DIR / "sandbox-hf")))

if SANDBOX_MODE:
    REPLICATE_BASE_URL = env_str("REPLICATE_BASE_URL", f"{SITE_URL}/sandbox/replicate")
    HF_ENDPOINT = env_str("HF_ENDPOINT", f"{SITE_URL}/sandbox/hf")
    STRIPE_API_BASE = env_str("STRIPE_API_BASE", f"{SITE_URL}/sandbox/stripe")
    REPLICATE_API_TOKEN = REPLICATE_API_TOKEN or "r8_sandbox_token_for_local_use_only"
    # Standard Webhooks secrets: "whsec_" + base64 of the key bytes.
    REPLICATE_WEBHOOK_SECRET = REPLICATE_WEBHOOK_SECRET or "whsec_c2FuZGJveC1yZXBsaWNhdGUta2V5LTAxMjM0NTY3"
    HF_TOKEN = HF_TOKEN or "hf_sandbox_token_for_local_use_only"
    STRIPE_SECRET_KEY = STRIPE_SECRET_KEY or "sk_test_sandbox_key_for_local_use_only"
    STRIPE_WEBHOOK_SECRET = STRIPE_WEBHOOK_SECRET or "whsec_sandbox_stripe_signing_secret"
else:
    REPLICATE_BASE_URL = env_str("REPLICATE_BASE_URL", "https://api.replicate.com")
    HF_ENDPOINT = env_str("HF_ENDPOINT", "https://huggingface.co")
    STRIPE_API_BASE = env_str("STRIPE_API_BASE", "https://api.stripe.com")

REPLICATE_TRAINER_MODEL = env_str("REPLICATE_TRAINER_MODEL", "ostris/flux-dev-lora-trainer")
REPLICATE_TRAINER_VERSION = env_str("REPLICATE_TRAINER_VERSION")  # empty: the model's latest version
REPLICATE_OWNER = env_str("REPLICATE_OWNER", "fluxsite")  # where destination models are created
REPLICATE_GENERATION_MODEL = env_str("REPLICATE_GENERATION_MODEL", "black-forest-labs/flux-dev-lora")
REPLICATE_TIMEOUT_SECONDS = env_int("REPLICATE_TIMEOUT_SECONDS", 30)
REPLICATE_WEIGHTS_MAX_BYTES = env_int("REPLICATE_WEIGHTS_MAX_BYTES", 2 * 1024 * 1024 * 1024)
# Output files are served from replicate.delivery and its subdomains (Replicate's output-files docs).
REPLICATE_DOWNLOAD_HOSTS = env_list(
    "REPLICATE_DOWNLOAD_HOSTS", ["replicate.delivery", "*.replicate.delivery"]
)
# Also download (over http, from a private address) from the host of REPLICATE_BASE_URL: only for a
# stand-in of Replicate served apart from the site (tests/prod/run.py); never with the real Replicate.
REPLICATE_DOWNLOADS_FROM_API_HOST = env_bool("REPLICATE_DOWNLOADS_FROM_API_HOST", False)
# Each download ends within this many seconds overall, however slowly the server sends.
REPLICATE_DOWNLOAD_DEADLINE_SECONDS = env_int("REPLICATE_DOWNLOAD_DEADLINE_SECONDS", 600)
HF_NAMESPACE = env_str("HF_NAMESPACE", "fluxsite")
HF_TIMEOUT_SECONDS = env_int("HF_TIMEOUT_SECONDS", 60)
STRIPE_API_VERSION = env_str("STRIPE_API_VERSION", "2025-03-31.basil")
STRIPE_TIMEOUT_SECONDS = env_int("STRIPE_TIMEOUT_SECONDS", 20)
# Keys for encrypting users' own Hugging Face tokens at rest: Fernet keys, comma-separated. The
# first encrypts, all decrypt (MultiFernet), so a key is rotated by putting a new one first and
# dropping the old one once `rotate` has re-encrypted everything. Required when DEBUG is off.
# FIELD_ENCRYPTION_KEY (one key) is read when the list is empty, for existing deployments.
FIELD_ENCRYPTION_KEYS = [
    key.strip() for key in env_secret("FIELD_ENCRYPTION_KEYS").split(",") if key.strip()
] or [key for key in [env_secret("FIELD_ENCRYPTION_KEY").strip()] if key]
if not FIELD_ENCRYPTION_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "DEBUG is off, so FIELD_ENCRYPTION_KEYS must be set: one or more Fernet keys, comma-separated "
        "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
    )
for _position, _key in enumerate(FIELD_ENCRYPTION_KEYS, start=1):
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEYS: key {_position} is not a Fernet key (32 url-safe base64-encoded bytes)."
        ) from None

# --- Credits and prices ---------------------------------------------------------------------------
GPU_PRICE_PER_SECOND = env_decimal_str("GPU_PRICE_PER_SECOND", "0.001525")  # H100, dollars
TRAINER_SECONDS_PER_STEP = env_decimal_str("TRAINER_SECONDS_PER_STEP", "1.1")
# The other trainers of the registry (training/trainers/, docs/trainers-research.md): their pinned
# versions, their hardware's price per second and the seconds a step takes, each overridable.
# replicate/fast-flux-trainer: 8x H100 at $0.012200/s (replicate.com/pricing, the fine-tune guide);
# about 120 s for 1000 steps (the guide's "around 2 minutes"), so 0.12 s a step.
REPLICATE_FAST_FLUX_TRAINER_VERSION = env_str(
    "REPLICATE_FAST_FLUX_TRAINER_VERSION", "8b10794665aed907bb98a1a5324cd1d3a8bea0e9b31e65210967fb9c9e2e08ed"
)
FAST_FLUX_GPU_PRICE_PER_SECOND = env_decimal_str("FAST_FLUX_GPU_PRICE_PER_SECOND", "0.0122")
FAST_FLUX_SECONDS_PER_STEP = env_decimal_str("FAST_FLUX_SECONDS_PER_STEP", "0.12")
# qwen/qwen-image-lora-trainer: the H100 price (its README); one recorded run took 18.7 min of
# predict time for 1500 steps, so 0.75 s a step. No H200 price is known (the research's gap).
REPLICATE_QWEN_TRAINER_VERSION = env_str(
    "REPLICATE_QWEN_TRAINER_VERSION", "f28eb39544f2c0dff4fbd9d50588fd75789f7ef26f6118456a96c2eedddddf90"
)
QWEN_GPU_PRICE_PER_SECOND = env_decimal_str("QWEN_GPU_PRICE_PER_SECOND", "0.001525")
QWEN_SECONDS_PER_STEP = env_decimal_str("QWEN_SECONDS_PER_STEP", "0.75")
CREDIT_VALUE_CENTS = env_int("CREDIT_VALUE_CENTS", 1)  # one credit is worth this many US cents
SIGNUP_CREDITS = env_int("SIGNUP_CREDITS", 500)  # granted once per verified (normalised) address
ACCOUNT_VERIFY_MAX_AGE_SECONDS = env_int("ACCOUNT_VERIFY_MAX_AGE_SECONDS", 3 * 24 * 3600)
GENERATION_CREDITS_PER_IMAGE = env_int("GENERATION_CREDITS_PER_IMAGE", 4)
UPSCALE_CREDITS_PER_IMAGE = env_int("UPSCALE_CREDITS_PER_IMAGE", 2)  # one upscaled image (Real-ESRGAN)
# Training price = GPU cost x this margin (a decimal string; Decimal math only, never float).
TRAINING_PRICE_MARGIN = env_decimal_str("TRAINING_PRICE_MARGIN", "1.5")
LOW_BALANCE_THRESHOLD = env_int("LOW_BALANCE_THRESHOLD", 100)

# --- Pipeline -------------------------------------------------------------------------------------
PIPELINE_MAX_ATTEMPTS = env_int("PIPELINE_MAX_ATTEMPTS", 5)
PIPELINE_STALE_MINUTES = env_int("PIPELINE_STALE_MINUTES", 3)
# Per-user caps on concurrent work, so one account cannot take the shared Replicate account.
MAX_ACTIVE_TRAININGS_PER_USER = env_int("MAX_ACTIVE_TRAININGS_PER_USER", 3)
MAX_QUEUED_GENERATIONS_PER_USER = env_int("MAX_QUEUED_GENERATIONS_PER_USER", 4)

# Generations: attempts, backoff, and the image downloads from Replicate's expiring URLs.
GENERATION_MAX_ATTEMPTS = env_int("GENERATION_MAX_ATTEMPTS", PIPELINE_MAX_ATTEMPTS)
GENERATION_RETRY_BASE_SECONDS = env_int("GENERATION_RETRY_BASE_SECONDS", 2)
GENERATION_INLINE_RETRY_SECONDS = env_int("GENERATION_INLINE_RETRY_SECONDS", 10)
GENERATION_DOWNLOAD_ATTEMPTS = env_int("GENERATION_DOWNLOAD_ATTEMPTS", 3)
GENERATION_DOWNLOAD_RETRY_SECONDS = env_int("GENERATION_DOWNLOAD_RETRY_SECONDS", 1)
GENERATION_IMAGE_MAX_BYTES = env_int("GENERATION_IMAGE_MAX_BYTES", 40 * 1024 * 1024)
GENERATION_DOWNLOAD_DEADLINE_SECONDS = env_int("GENERATION_DOWNLOAD_DEADLINE_SECONDS", 60)
# An input image (image-to-image, inpainting) or mask a person uploads: checked before any spend.
GENERATION_INPUT_MAX_BYTES = env_int("GENERATION_INPUT_MAX_BYTES", 10 * 1024 * 1024)
GENERATION_INPUT_MAX_PIXELS = env_int("GENERATION_INPUT_MAX_PIXELS", 16_000_000)
# The public upscaler a generated image is enlarged with (inputs: image, scale, face_enhance).
REPLICATE_UPSCALE_MODEL = env_str("REPLICATE_UPSCALE_MODEL", "nightmareai/real-esrgan")

# The sample grid made after every successful training: its prompts at several LoRA strengths (0 is
# the base model without the LoRA), one fixed seed, paid as part of the training's price.
SAMPLE_GRID_PROMPTS = env_int("SAMPLE_GRID_PROMPTS", 3)  # the default number, and the most
SAMPLE_GRID_STRENGTHS = [
    float(s) for s in env_list("SAMPLE_GRID_STRENGTHS", ["0", "0.6", "0.8", "1.0", "1.2"])
]
SAMPLE_GRID_SEED = env_int("SAMPLE_GRID_SEED", 42)
SAMPLE_GRID_CONCURRENCY = env_int("SAMPLE_GRID_CONCURRENCY", 4)  # predictions in flight per grid
SAMPLE_GRID_WAIT_SECONDS = env_int("SAMPLE_GRID_WAIT_SECONDS", 60)  # then the poller takes over
SAMPLE_GRID_CREDITS_PER_IMAGE = env_int("SAMPLE_GRID_CREDITS_PER_IMAGE", GENERATION_CREDITS_PER_IMAGE)
SAMPLE_GRID_MAX_ATTEMPTS = env_int("SAMPLE_GRID_MAX_ATTEMPTS", 3)  # per cell, reruns included

# --- Captioning a dataset's photos with a vision model on Replicate --------------------------------
# The models we can caption with, each pinned to a version (override per model with the environment);
# their inputs and outputs are described in training/captioning_models.py, from their real schemas.
CAPTION_MODEL_VERSIONS = {
    "lucataco/florence-2-large": env_str(
        "CAPTION_FLORENCE_VERSION", "da53547e17d45b9cfb48174b2f18af8b83ca020fa76db62136bf9c6616762595"
    ),
    "yorickvp/llava-13b": env_str(
        "CAPTION_LLAVA_VERSION", "b5f6212d032508382d61ff00469ddda3e32fd8a0e75dc39d8a4191bb742157fb"
    ),
}
CAPTION_DEFAULT_MODEL = env_str("CAPTION_DEFAULT_MODEL", "lucataco/florence-2-large")
# How many predictions of one batch run at Replicate at once (the rest wait, queued, in our database).
CAPTION_CONCURRENCY = env_int("CAPTION_CONCURRENCY", 4)
CAPTION_MAX_PHOTOS_PER_BATCH = env_int("CAPTION_MAX_PHOTOS_PER_BATCH", 50)
CAPTION_MAX_ACTIVE_BATCHES_PER_USER = env_int("CAPTION_MAX_ACTIVE_BATCHES_PER_USER", 2)
# Price per photo = the model's seconds per run x its hardware's price per second x this margin, rounded
# up to whole credits (decimal strings; the seconds and hardware are per model, in captioning_models).
CAPTION_PRICE_MARGIN = env_decimal_str("CAPTION_PRICE_MARGIN", "1.5")

# --- E-mail ------------------------------------------------------------------------------------
EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 20)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Fluxsite <noreply@fluxsite.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
ADMINS = [("Operators", a) for a in env_list("ADMIN_EMAILS")]

# --- Security ------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads nothing from it; the token is put in hx-headers
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    # The name Django reads (SECURE_REDIRECT_EXEMPT), matched against the path without its leading
    # slash: the load balancer's plain-HTTP health probes must not be redirected.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^healthz/ready$"]
CSP_EXTRA_IMG_SOURCES = [f"https://{S3_PUBLIC_DOMAIN}"] if S3_PUBLIC_DOMAIN else []
# Browser features no page uses are switched off for every page (fluxsite.middleware). The camera
# stays allowed for our own origin: the upload page's file inputs may open it (`capture`).
PERMISSIONS_POLICY = (
    "camera=(self), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), "
    "midi=(), magnetometer=(), gyroscope=(), accelerometer=(), display-capture=(), browsing-topics=()"
)

# Sessions: a sign-in lasts at most SESSION_COOKIE_AGE, and ends earlier after
# SESSION_IDLE_TIMEOUT_SECONDS without a request (fluxsite.middleware.SessionIdleTimeoutMiddleware).
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 7 * 24 * 3600)
SESSION_IDLE_TIMEOUT_SECONDS = env_int("SESSION_IDLE_TIMEOUT_SECONDS", 2 * 24 * 3600)
# Reset links expire after an hour and are built on SITE_URL, never on the request's Host header.
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600)

# Error reports (admin e-mails, the DEBUG page) hide secrets by name and by value.
DEFAULT_EXCEPTION_REPORTER_FILTER = "fluxsite.reporting.SecretsExceptionReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "fluxsite.reporting.SecretsExceptionReporter"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Log lines: plain text (the default) or one JSON object per line (LOG_FORMAT=json, for a log
# aggregator); both carry the request id (fluxsite.logs) and are scrubbed of secrets.
LOG_FORMAT = env_str("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "fluxsite.logs.RequestIdFilter"}},
    # Log lines are scrubbed of secrets too (fluxsite.reporting): a vendor error may quote a token.
    "formatters": {
        "plain": {
            "()": "fluxsite.reporting.SecretsFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s",
        },
        "json": {"()": "fluxsite.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "werkzeug": {"level": "WARNING"},
        "botocore": {"level": "WARNING"},
    },
}

# --- Error reporting to Sentry (optional) ----------------------------------------------------------
# Off unless SENTRY_DSN is set; then sentry-sdk (the "sentry" extra) is imported and every event is
# scrubbed of secrets as error mails are (fluxsite.integrations.sentry).
SENTRY_DSN = env_secret("SENTRY_DSN")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", "development" if DEBUG else "production")
SENTRY_RELEASE = env_str("SENTRY_RELEASE")
SENTRY_TRACES_SAMPLE_RATE = float(env_decimal_str("SENTRY_TRACES_SAMPLE_RATE", "0"))
if SENTRY_DSN:
    from fluxsite.integrations.sentry import sentry_init

    sentry_init(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=SENTRY_RELEASE,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    )
