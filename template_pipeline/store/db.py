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
    """One pooled engine per URL and process (Dagster runs many steps in one process).

    Its connections carry the same timeouts and keepalives as the write path's.
    """
    engine = sa.create_engine(
        sqlalchemy_url(url), pool_pre_ping=True, future=True, connect_args=connect_options(url)
    )
    sa.event.listen(engine, "connect", _on_engine_connect)
    return engine


def _on_engine_connect(dbapi_connection, connection_record) -> None:
    _apply_client_check(dbapi_connection)


# Session settings of every connection of the write path, set before its first statement.
SESSION_SETTINGS: dict[str, str] = {
    # Keep a big site's staging table in memory (it is read by several statements); this can
    # only be set before the session's first temporary table.
    "temp_buffers": "128MB",
}

# TCP keepalives, on both ends: a peer that vanished without closing (a host gone, a cut
# network) is noticed within idle + interval x count = about 60 s, and its session ends.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 30, 10, 3
# PostgreSQL 14+ checks this often, during a running statement, whether the client is still
# connected: a killed client's statement (and its locks) end within seconds, not when the
# statement would have finished.
CLIENT_CHECK_INTERVAL_MS = 2000


def _ms(variable: config.Variable, environ: Mapping[str, str] | None) -> str:
    seconds = config.number(variable, environ)
    if not seconds >= 0:
        raise DatabaseConfigError(f"{variable.name} must be a number of seconds >= 0")
    return str(int(seconds * 1000))


def server_timeouts(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server-side limits of every Dashboard session (milliseconds; 0 would be none)."""
    return {
        "statement_timeout": _ms(config.DB_STATEMENT_TIMEOUT_S, environ),
        "lock_timeout": _ms(config.DB_LOCK_TIMEOUT_S, environ),
        "idle_in_transaction_session_timeout": _ms(config.DB_IDLE_TX_TIMEOUT_S, environ),
        "tcp_keepalives_idle": str(KEEPALIVE_IDLE_S),
        "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL_S),
        "tcp_keepalives_count": str(KEEPALIVE_COUNT),
    }


def connect_options(
    url: str | URL | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, object]:
    """libpq parameters of every Dashboard connection: timeouts, keepalives, server limits.

    ``options`` the URL itself carries come first (the limits here are added after them).
    """
    connect_timeout = config.number(config.DB_CONNECT_TIMEOUT_S, environ)
    if not connect_timeout >= 1:
        raise DatabaseConfigError(f"{config.DB_CONNECT_TIMEOUT_S.name} must be at least 1 s")
    limits = (f"-c {name}={value}" for name, value in server_timeouts(environ).items())
    own = sqlalchemy_url(url).query.get("options") if url is not None else None
    own = own if isinstance(own, str) else " ".join(own or ())
    options = " ".join((own, *limits)).strip()
    return {
        "connect_timeout": int(connect_timeout),
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE_S,
        "keepalives_interval": KEEPALIVE_INTERVAL_S,
        "keepalives_count": KEEPALIVE_COUNT,
        "options": options,
    }


def _apply_client_check(conn) -> None:
    """Set ``client_connection_check_interval`` where the server knows it (14 and later)."""
    if conn.info.server_version < 140000:
        return
    cursor = conn.cursor()
    cursor.execute(
        "SELECT set_config('client_connection_check_interval', %s, false)",
        (str(CLIENT_CHECK_INTERVAL_MS),),
    )
    cursor.close()
    conn.commit()


def connect(url: str):
    """A raw psycopg 3 connection (autocommit off): the IO manager's COPY path needs it."""
    import psycopg

    conn = psycopg.connect(libpq_conninfo(url), **connect_options(url))
    for name, value in SESSION_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    conn.commit()
    _apply_client_check(conn)
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
