"""The embedded PostgreSQL used where no server is configured (the demo, tests on a fresh machine).

A private server from the ``pgserver`` wheel under ``.local/`` (``TEMPLATE_PIPELINE_LOCAL_DIR``);
it listens on a Unix socket only, so it never clashes with a port.
"""

from __future__ import annotations

from pathlib import Path

from template_pipeline.domain import config
from template_pipeline.store.db import (
    DASHBOARD_DATABASE_URL_ENV,
    DatabaseConfigError,
    ensure_database,
)


def start_embedded_postgres(pgdata: Path | None = None, database: str = "dashboard") -> str:
    """Start (or reuse) a private PostgreSQL server under ``.local/`` and return a URL for it.

    The server keeps running after this process exits so that the demo, ``dagster dev`` and
    repeated test runs share it; ``stop_embedded_postgres`` stops it.
    """
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - pgserver is a declared dependency
        raise DatabaseConfigError(
            "no database URL is configured and the embedded PostgreSQL (pgserver) is not "
            "installed: run `make install` or set " + DASHBOARD_DATABASE_URL_ENV
        ) from exc

    pgdata = Path(pgdata or config.local_dir() / "pgdata")
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: leave the server running for the next command instead of stopping it
    # when this interpreter exits.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    ensure_database(server.get_uri(), database)
    return server.get_uri(database)


def stop_embedded_postgres(pgdata: Path | None = None) -> None:
    import pgserver

    pgdata = Path(pgdata or config.local_dir() / "pgdata")
    if pgdata.exists():
        pgserver.get_server(pgdata, cleanup_mode="stop").cleanup()
