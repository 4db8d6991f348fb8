"""Shared fixtures: a real PostgreSQL database for the session, and a clean environment.

The database comes from ``TEMPLATE_PIPELINE_TEST_DATABASE_URL`` (CI points it at the machine's
server) or, where it is not set, from the embedded PostgreSQL under ``.local/``. Either way the
session works in a database of its own, created here, migrated to this release's schema with
``template-pipeline migrate``'s function (as production does before any sync) and dropped at the
end, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid

import pytest

from template_pipeline.domain import config
from template_pipeline.store import db, embedded, migrate

TEST_DATABASE_URL_ENV = config.TEST_DATABASE_URL.name


@pytest.fixture(autouse=True)
def _isolated_config_env(monkeypatch):
    """No test depends on the developer's own configuration: every runtime variable of the
    configuration module is unset (families such as the per-site keys are set by the tests
    that need them)."""
    for name in config.reset_in_tests():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of a PostgreSQL server's maintenance database (``postgres``)."""
    url = config.TEST_DATABASE_URL.get()
    if url:
        return url
    return embedded.start_embedded_postgres(database="postgres")


@pytest.fixture(scope="session")
def database_url(postgres_server_url) -> str:
    """A fresh database for this test session, at this release's schema (SQLAlchemy URL)."""
    name = f"tp_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    db.ensure_database(postgres_server_url, name)
    url = str(
        db.sqlalchemy_url(db.with_database(postgres_server_url, name)).render_as_string(
            hide_password=False
        )
    )
    migrate.upgrade(url)
    yield url
    db.get_engine.cache_clear()
    db.drop_database(postgres_server_url, name)


@pytest.fixture
def dashboard_env(monkeypatch, database_url) -> str:
    """``DASHBOARD_DATABASE_URL`` set to the session database."""
    monkeypatch.setenv("DASHBOARD_DATABASE_URL", database_url)
    return database_url


@pytest.fixture
def url(database_url) -> str:
    return database_url


@pytest.fixture
def site() -> str:
    """A site key of its own for each test, so tests never see each other's rows."""
    return f"site-{uuid.uuid4().hex[:10]}"
