"""Loaded by pytest before Django (`-p tests.testenv` in pyproject): test-only environment
defaults, so `pytest` works in a fresh clone without a .env file."""

import os
import tempfile

os.environ["DJANGO_READ_DOT_ENV"] = "0"
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
_TMP = tempfile.mkdtemp(prefix="roomchat-test-")
os.environ.setdefault("CHROMA_PATH", os.path.join(_TMP, "chroma"))
# The test database is a file beside this one (config/settings.py), never the developer's.
os.environ.setdefault("DATABASE_URL", f"sqlite:///{os.path.join(_TMP, 'db.sqlite3')}")
# No LLM configured unless a test points OPENAI_BASE_URL at the simulator.
for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "REDIS_URL", "CHROMA_URL", "CHAT_LLM_PROVIDER"):
    os.environ.pop(name, None)
os.environ.setdefault("CHAT_OFFLINE_TOKEN_DELAY", "0")
