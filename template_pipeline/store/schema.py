"""The schema bootstrap: every table of the Dashboard database, created once per process.

``metadata`` holds the entity and bookkeeping tables (:mod:`.tables`) and the operations tables
(:mod:`.ops_tables`); importing both here is what makes the bootstrap cover all of them.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa

from template_pipeline.store import db, ops_tables, tables
from template_pipeline.store.base import metadata
from template_pipeline.store.locks import xact_lock_sa

# Both modules define tables on ``metadata``; they are imported for that.
TABLE_MODULES = (tables, ops_tables)

_ready: set[str] = set()
_ready_lock = threading.Lock()


def create_tables(engine_or_url: sa.Engine | str) -> None:
    """Create the tables and indexes that are missing (never alters existing ones).

    Runs in one transaction under a transaction-scoped advisory lock: two processes starting on
    an empty database at once would otherwise both see a table missing and one would fail on
    ``CREATE TABLE``.
    """
    engine = db.get_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    with engine.begin() as conn:
        xact_lock_sa(conn, "create_tables")
        metadata.create_all(conn, checkfirst=True)


def ensure_schema(database_url: str) -> None:
    """Create every missing table once per process and database (cheap after the first call)."""
    if database_url in _ready:
        return
    with _ready_lock:
        if database_url not in _ready:
            create_tables(database_url)
            _ready.add(database_url)
