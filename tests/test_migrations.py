"""An empty database upgrades to head, on SQLite and on PostgreSQL, and matches the models."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from tests.conftest import upgrade_database


def _check(url: str) -> None:
    from cafe.config import _normalise_db_url
    from cafe.models import db  # noqa: F401 - registers the tables

    engine = create_engine(_normalise_db_url(url))
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"facilitator", "api_token", "cafe", "participant", "seat", "note", "alembic_version"} <= tables
        with engine.connect() as conn:
            head = conn.exec_driver_sql("select version_num from alembic_version").scalar()
        from alembic.script import ScriptDirectory
        from alembic.config import Config
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).resolve().parent.parent / "migrations"))
        assert head == ScriptDirectory.from_config(cfg).get_current_head()
    finally:
        engine.dispose()


def _models_match(url: str) -> None:
    """Autogenerate finds nothing to do: the migrations and the models agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from cafe.config import _normalise_db_url
    from cafe.extensions import db
    import cafe.models  # noqa: F401

    engine = create_engine(_normalise_db_url(url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_sqlite_empty_to_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade_database(url)
    _check(url)
    _models_match(url)


@pytest.mark.postgres
def test_postgres_empty_to_head(postgres_url: str) -> None:
    _check(postgres_url)
    _models_match(postgres_url)
