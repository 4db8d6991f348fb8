"""Database URLs, engines and connections of the Dashboard's PostgreSQL.

PostgreSQL is the only store. Production and CI name a server in ``DASHBOARD_DATABASE_URL``;
the demo and the tests on a fresh machine start an embedded one (:mod:`.embedded`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from template_pipeline.domain import config

logger = logging.getLogger(__name__)

DASHBOARD_DATABASE_URL_ENV = config.DASHBOARD_DATABASE_URL.name


class DatabaseConfigError(RuntimeError):
    """The dashboard database is not configured or its URL is not usable."""


def sqlalchemy_url(url: str | URL) -> URL:
    """Return ``url`` with the psycopg 3 driver, whatever driver (or none) it names.

    Operators paste ``postgres://`` or ``postgresql://`` URLs from their PaaS; the pipeline always
    talks psycopg 3 (COPY support and server-side binding without SQLAlchemy's slow paths).
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise DatabaseConfigError(
            f"{DASHBOARD_DATABASE_URL_ENV} is not a valid database URL ({type(exc).__name__})"
        ) from None
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        return parsed.set(drivername="postgresql+psycopg")
    raise DatabaseConfigError(
        f"{DASHBOARD_DATABASE_URL_ENV} must point to PostgreSQL, not {backend!r}"
    )


def libpq_conninfo(url: str | URL) -> str:
    """The same database as a libpq URL, for ``psycopg.connect`` and ``psql``."""
    parsed = sqlalchemy_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def dagster_storage_url(url: str | URL) -> str:
    """``url`` as dagster-postgres needs it in ``DAGSTER_POSTGRES_URL``: the psycopg2 driver.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` URL to psycopg 3, whose server-side binding
    breaks dagster-postgres (``NOTIFY run_events, $1``); naming psycopg2 keeps it working.
    """
    parsed = sqlalchemy_url(url).set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def dashboard_database_url(environ: Mapping[str, str] | None = None) -> str:
    """The configured dashboard database URL, or a clear error saying what to set."""
    url = config.DASHBOARD_DATABASE_URL.get(environ)
    if not url:
        raise DatabaseConfigError(
            f"{DASHBOARD_DATABASE_URL_ENV} is not set: point it at the Dashboard's PostgreSQL "
            "database (for a local try, `make demo` starts an embedded one)"
        )
    return url


@lru_cache(maxsize=16)
def get_engine(url: str) -> sa.Engine:
    """One pooled engine per URL and process (Dagster runs many steps in one process)."""
    return sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True, future=True)


# Session settings of every connection of the write path, set before its first statement.
SESSION_SETTINGS: dict[str, str] = {
    # Keep a big site's staging table in memory (it is read by several statements); this can
    # only be set before the session's first temporary table.
    "temp_buffers": "128MB",
}


def connect(url: str):
    """A raw psycopg 3 connection (autocommit off): the IO manager's COPY path needs it."""
    import psycopg

    conn = psycopg.connect(libpq_conninfo(url))
    for name, value in SESSION_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    conn.commit()
    return conn


def ensure_database(server_url: str, database: str) -> None:
    """Create ``database`` on the server behind ``server_url`` if it does not exist yet."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(libpq_conninfo(server_url), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def drop_database(server_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(libpq_conninfo(server_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database of the same server."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)
