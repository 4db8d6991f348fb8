"""Advisory locks: who may write what at the same time.

Every lock is transaction-scoped (``pg_advisory_xact_lock``): it cannot outlive a commit, a
rollback or a dead client's backend. Keys are texts hashed to 64 bits by the server, so the
processes of every deployment agree on them without a registry.
"""

from __future__ import annotations

from typing import Any, Protocol

import sqlalchemy as sa

_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
_PREFIX = "template_pipeline"


class _Executes(Protocol):
    def execute(self, query: Any, params: Any = ...) -> Any: ...


def lock_name(*parts: str) -> str:
    """The text of a lock key: ``template_pipeline:<part>:<part>...``."""
    return ":".join((_PREFIX, *parts))


def xact_lock(cursor: _Executes, *parts: str) -> None:
    """Wait for the advisory lock named by ``parts`` until the end of the transaction.

    ``cursor`` is a psycopg cursor or connection (``%s`` placeholders).
    """
    cursor.execute(_LOCK_SQL, (lock_name(*parts),))


def site_table_lock(cursor: _Executes, table: str, site: str) -> None:
    """Writers of one site's slice of one table queue here (after staging, before the merge)."""
    xact_lock(cursor, table, site)


def xact_lock_sa(conn: sa.Connection, *parts: str) -> None:
    """:func:`xact_lock` on a SQLAlchemy connection."""
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
        {"name": lock_name(*parts)},
    )
