"""Shared fixtures: a real PostgreSQL database for the session, and a clean environment.

The database comes from ``TEMPLATE_PIPELINE_TEST_DATABASE_URL`` (CI points it at the machine's
server) or, where it is not set, from the embedded PostgreSQL under ``.local/``. Either way the
session works in a database of its own, created here and dropped at the end, so runs never see
each other's rows.
"""

from __future__ import annotations

import os
import uuid

import pytest

from template_pipeline.store import db, embedded

TEST_DATABASE_URL_ENV = "TEMPLATE_PIPELINE_TEST_DATABASE_URL"

# Variables that would make a test depend on the developer's own configuration.
_CONFIG_ENV = (
    "TEMPLATE_SITES_FILE",
    "TEMPLATE_BASE_URL",
    "TEMPLATE_API_KEY",
    "TEMPLATE_SITE_KEY",
    "DASHBOARD_DATABASE_URL",
    "ALERT_WEBHOOK_URL",
)


@pytest.fixture(autouse=True)
def _isolated_config_env(monkeypatch):
    for name in _CONFIG_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of a PostgreSQL server's maintenance database (``postgres``)."""
    url = os.environ.get(TEST_DATABASE_URL_ENV, "").strip()
    if url:
        return url
    return embedded.start_embedded_postgres(database="postgres")


@pytest.fixture(scope="session")
def database_url(postgres_server_url) -> str:
    """A fresh database for this test session (SQLAlchemy URL, psycopg driver)."""
    name = f"tp_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    db.ensure_database(postgres_server_url, name)
    url = str(
        db.sqlalchemy_url(db.with_database(postgres_server_url, name)).render_as_string(
            hide_password=False
        )
    )
    yield url
    db.get_engine.cache_clear()
    db.drop_database(postgres_server_url, name)


@pytest.fixture
def dashboard_env(monkeypatch, database_url) -> str:
    """``DASHBOARD_DATABASE_URL`` set to the session database."""
    monkeypatch.setenv("DASHBOARD_DATABASE_URL", database_url)
    return database_url
