"""Advisory locks: who may write what at the same time.

Every lock is transaction-scoped (``pg_advisory_xact_lock``): it cannot outlive a commit, a
rollback or a dead client's backend. Keys are texts hashed to 64 bits by the server, so the
processes of every deployment agree on them without a registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import psycopg
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


class SiteBusyError(RuntimeError):
    """Another run holds the site's lock for longer than this run may wait."""


@contextmanager
def site_lock(
    conn: psycopg.Connection, site: str, *, wait_s: float, poll_s: float = 0.2
) -> Iterator[None]:
    """Hold the site's session-level advisory lock on ``conn`` while the body runs.

    One run writes a site at a time, whatever launched it (a batch, a single-site run from the
    UI, the CLI): the run queue's per-partition limit cannot see the sites inside a ranged run.
    The lock is polled (never a server-side wait without limit) and a session lock dies with
    its connection, so a killed run never leaves a site locked.
    """
    name = lock_name("site", site)
    deadline = time.monotonic() + wait_s
    while True:
        acquired = conn.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)
        ).fetchone()
        conn.commit()
        if acquired and acquired[0]:
            break
        if time.monotonic() >= deadline:
            raise SiteBusyError(
                f"site {site!r}: another run has been writing this site for more than "
                f"{wait_s:g} s; this run leaves it alone"
            )
        time.sleep(poll_s)
    try:
        yield
    finally:
        if not conn.closed and not conn.broken:
            try:
                conn.rollback()
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))
                conn.commit()
            except psycopg.Error:
                conn.close()  # closing the session releases the lock on the server
