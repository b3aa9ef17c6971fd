"""Configuration, read from the environment."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def _instance_dir() -> Path:
    path = Path(os.environ.get("CAFE_INSTANCE_DIR") or Path(__file__).resolve().parent.parent / "instance")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _secret_key(instance: Path) -> str:
    """SECRET_KEY from the environment, or generated once and kept in ``instance/``."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    key_file = instance / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def _normalise_db_url(url: str) -> str:
    # psycopg 3 is the PostgreSQL driver; accept the common spellings.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class Config:
    """Production-ish defaults; every value can come from the environment."""

    def __init__(self) -> None:
        instance = _instance_dir()
        self.INSTANCE_DIR = str(instance)
        self.SECRET_KEY = _secret_key(instance)
        self.SQLALCHEMY_DATABASE_URI = _normalise_db_url(
            os.environ.get("DATABASE_URL") or f"sqlite:///{instance / 'cafe.db'}")
        self.MESSAGE_QUEUE = os.environ.get("MESSAGE_QUEUE") or None
        # The Redis pub/sub channel the workers of one deployment share (Redis channels ignore the db number).
        self.SOCKETIO_CHANNEL = os.environ.get("SOCKETIO_CHANNEL", "cafe")
        self.CAFE_SERVER = os.environ.get("CAFE_SERVER", "eventlet")
        self.PUBLIC_URL = os.environ.get("PUBLIC_URL") or None   # e.g. https://cafe.example.org
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "0") == "1"
        self.BABEL_DEFAULT_LOCALE = "en"
        # How long a phone may be gone before it loses its seat in the next round.
        self.PRESENCE_GRACE_SECONDS = int(os.environ.get("PRESENCE_GRACE_SECONDS", "600"))
        # Group commit of notes: one transaction per batch, gathered for up to this many seconds.
        # 0: no waiting; whatever queued up while the last batch committed forms the next batch.
        self.NOTE_BATCH_WINDOW = float(os.environ.get("NOTE_BATCH_WINDOW", "0"))
        self.NOTE_BATCH_MAX = int(os.environ.get("NOTE_BATCH_MAX", "200"))
        # PostgreSQL: how long the note writer waits for each answer before yielding to the event loop
        # (see cafe.services.pgwait); 0, the default: it yields at once.
        self.NOTE_WRITER_BLOCKING_WAIT_MS = float(os.environ.get("NOTE_WRITER_BLOCKING_WAIT_MS", "0"))
        # For the load benchmark: where the note writer saves the time each operation spent in it (see
        # cafe.services.batching._StageTimes); unset, nothing is recorded.
        self.NOTE_WRITER_STATS = os.environ.get("NOTE_WRITER_STATS") or None
        self.SEATING_TIME_LIMIT = float(os.environ.get("SEATING_TIME_LIMIT", "0.2"))
        # Joins a process runs at once; the rest wait their turn (see
        # cafe.web.context.join_slot). Unbounded, a crowd scanning the QR code together on PostgreSQL left a
        # few phones waiting 5-10 s; a join still waiting after JOIN_WAIT_SECONDS is told to try again.
        self.JOIN_CONCURRENCY = max(1, int(os.environ.get("JOIN_CONCURRENCY", "16")))
        self.JOIN_WAIT_SECONDS = float(os.environ.get("JOIN_WAIT_SECONDS", "20"))
        # Which clustering pipeline proposes themes (None: the default; "tfidf" needs no model).
        self.THEME_MODEL = os.environ.get("CAFE_THEME_MODEL") or None
        self.MAX_HTTP_BUFFER_SIZE = int(os.environ.get("MAX_HTTP_BUFFER_SIZE", str(64 * 1024)))
        # Engine.IO pings: every PING_INTERVAL seconds; a phone that has not answered PING_TIMEOUT seconds
        # after one is taken as gone (its seat is kept for PRESENCE_GRACE_SECONDS).
        self.PING_INTERVAL = float(os.environ.get("PING_INTERVAL", "20"))
        self.PING_TIMEOUT = float(os.environ.get("PING_TIMEOUT", "20"))
        # Websocket compression (permessage-deflate) cost 108-133 KB more per phone (measured); off unless 1.
        self.WEBSOCKET_COMPRESSION = os.environ.get("WEBSOCKET_COMPRESSION", "0") == "1"
        self.SQLALCHEMY_ENGINE_OPTIONS = _engine_options(self.SQLALCHEMY_DATABASE_URI)


def _engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"check_same_thread": False, "timeout": 30}}
    # Under eventlet/gevent queries yield, so more handlers hold a connection at once.
    return {"pool_pre_ping": True, "pool_size": int(os.environ.get("DB_POOL_SIZE", "20")),
            "max_overflow": int(os.environ.get("DB_MAX_OVERFLOW", "20"))}


class TestConfig(Config):
    """Tests: a throwaway database, threading mode, short batch windows."""

    TESTING = True

    def __init__(self, database_url: str | None = None) -> None:
        super().__init__()
        if database_url:
            self.SQLALCHEMY_DATABASE_URI = _normalise_db_url(database_url)
            self.SQLALCHEMY_ENGINE_OPTIONS = _engine_options(self.SQLALCHEMY_DATABASE_URI)
        self.SECRET_KEY = "test-secret"
        self.NOTE_BATCH_WINDOW = 0.005
        self.SEATING_TIME_LIMIT = 0.05
        self.MESSAGE_QUEUE = None
        self.CAFE_SERVER = "threading"
