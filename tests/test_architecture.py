"""Imports run one way: web -> services -> {domain, models}; the domain imports nothing of the app."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cafe"
FORBIDDEN_IN_DOMAIN = ("flask", "flask_socketio", "socketio", "engineio", "sqlalchemy", "flask_sqlalchemy",
                       "eventlet", "gevent", "cafe")


def imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def test_domain_is_pure() -> None:
    for path in (PACKAGE / "domain").rglob("*.py"):
        for name, level in imports(path):
            top = name.split(".")[0]
            assert level <= 1 or not name, f"{path.name} reaches out of the domain: {name}"
            assert level == 1 or top not in FORBIDDEN_IN_DOMAIN, f"{path.name} imports {name}"


def test_services_do_not_import_web() -> None:
    for path in (PACKAGE / "services").rglob("*.py"):
        for name, _level in imports(path):
            assert "web" not in name.split("."), f"{path.name} imports {name}"
            assert not name.startswith("flask_socketio"), f"{path.name} imports {name}"


# Server entry points (each runs as its own process): they alone may import eventlet or gevent.
ENTRY_POINTS = {PACKAGE / "bench" / "bare_server.py"}


def test_only_wsgi_imports_eventlet_or_gevent() -> None:
    for path in set(PACKAGE.rglob("*.py")) - ENTRY_POINTS:
        for name, _level in imports(path):
            assert name.split(".")[0] not in ("eventlet", "gevent"), f"{path} imports {name}"


def test_handlers_never_touch_the_session_directly() -> None:
    for path in (PACKAGE / "web").rglob("*.py"):
        text = path.read_text()
        assert "db.session.add" not in text and "db.session.commit" not in text, path.name
