"""Shared fixtures: an app per test (TestConfig, threading mode), clients, services, helpers."""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

os.environ.setdefault("CAFE_INSTANCE_DIR", tempfile.mkdtemp(prefix="cafe-test-instance-"))

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("CAFE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CAFE_TEST_REDIS", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("CAFE_REQUIRE_SERVICES") == "1"


@contextmanager
def statements_run(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the engine sends inside the block, with its parameters, in order."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip with a clear reason where the server is absent, unless CI demands the services."""
    if _port_open(host, port):
        return
    message = f"{name} is not running at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}, and CAFE_REQUIRE_SERVICES=1 demands it")
    pytest.skip(f"{message} (these tests run where it is; CI sets CAFE_REQUIRE_SERVICES=1)")


def upgrade_database(url: str) -> None:
    """Run the Alembic migrations to head against ``url`` (as ``flask db upgrade`` does)."""
    from flask_migrate import upgrade

    from cafe import create_app
    from cafe.config import TestConfig

    app = create_app(TestConfig(database_url=url))
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        from cafe.extensions import db
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (faster than migrating every time)."""
    path = tmp_path_factory.mktemp("template") / "cafe.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "cafe.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the PostgreSQL ``test`` database, migrated to head, dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    base = POSTGRES_URL
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    try:
        upgrade_database(url)
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _make_app(url: str) -> Any:
    from cafe import create_app
    from cafe.config import TestConfig

    return create_app(TestConfig(database_url=url))


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """SQLite by default; ``@both_databases`` runs a test on PostgreSQL too."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return request.getfixturevalue("sqlite_url")


both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)


def _app_for(url: str) -> Iterator[Any]:
    application = _make_app(url)
    yield application
    application.extensions["cafe.committer"].stop()
    from cafe.extensions import db
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(database_url: str) -> Iterator[Any]:
    yield from _app_for(database_url)


@pytest.fixture
def pg_app(postgres_url: str) -> Iterator[Any]:
    yield from _app_for(postgres_url)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


class Actions:
    """Set-up steps tests share: a facilitator, a café, logged-in clients, socket clients."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._n = 0

    def facilitator(self, email: str | None = None, password: str = "correct horse battery") -> int:
        from cafe.services import accounts
        self._n += 1
        with self.app.app_context():
            return accounts.create_facilitator(email or f"fac{self._n}-{uuid.uuid4().hex[:6]}@example.org",
                                               password).id

    def token(self, facilitator_id: int) -> str:
        from cafe.services import accounts
        with self.app.app_context():
            return accounts.create_token(facilitator_id, "test")[1]

    def cafe(self, facilitator_id: int, **settings: Any) -> Any:
        from cafe.services.cafes import create_cafe
        data = {"title": "Our neighbourhood", "questions": ["What would make this place healthier?"]} | settings
        with self.app.app_context():
            cafe = create_cafe(facilitator_id, data)
            return {"id": cafe.id, "join_code": cafe.join_code}

    def logged_in(self, facilitator_id: int) -> Any:
        client = self.app.test_client()
        with client.session_transaction() as sess:
            sess["facilitator_id"] = facilitator_id
        return client

    def facilitator_socket(self, facilitator_id: int, cafe_id: int | None = None) -> Any:
        from cafe.extensions import socketio
        sock = socketio.test_client(self.app, flask_test_client=self.logged_in(facilitator_id))
        assert sock.is_connected()
        if cafe_id is not None:
            answer = sock.emit("facilitator_join", {"cafe_id": cafe_id}, callback=True)
            assert answer["ok"], answer
        return sock

    def phone(self, join_code: str, name: str | None = None, **extra: Any) -> tuple[Any, dict[str, Any]]:
        from cafe.extensions import socketio
        sock = socketio.test_client(self.app, flask_test_client=self.app.test_client())
        payload = {"join_code": join_code} | ({"name": name} if name else {}) | extra
        answer = sock.emit("participant_join", payload, callback=True)
        return sock, answer


@pytest.fixture
def actions(app: Any) -> Actions:
    return Actions(app)


def received(sock: Any, name: str) -> list[dict[str, Any]]:
    """Drain what the server pushed to a test client; the payloads of events called ``name``."""
    return [pkt["args"][0] for pkt in sock.get_received() if pkt["name"] == name]
