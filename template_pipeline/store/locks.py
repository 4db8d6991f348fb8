"""Advisory locks: who may write what at the same time.

Every lock is transaction-scoped (``pg_advisory_xact_lock``): it cannot outlive a commit, a
rollback or a dead client's backend. Keys are texts hashed to 64 bits by the server, so the
processes of every deployment agree on them without a registry.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import psycopg
import sqlalchemy as sa

logger = logging.getLogger(__name__)

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


# Who holds a site's lock, in the holder session's application_name (pg_stat_activity shows it
# to operators too): "template-pipeline lock <since> <host>:<pid>" (PostgreSQL keeps 63 bytes).
_HOLDER_PREFIX = "template-pipeline lock "
_HOLDER_SQL = """
SELECT a.pid, a.application_name, a.backend_start
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)
LIMIT 1
"""


@dataclass(frozen=True)
class LockHolder:
    """The session holding a lock: its backend, and what its application_name says."""

    backend_pid: int
    since: str | None  # when the holder took the lock (UTC, ISO 8601), if it said
    host: str | None
    pid: int | None  # the holder's client process

    def describe(self) -> str:
        who = f"process {self.pid} on {self.host}" if self.pid else f"backend {self.backend_pid}"
        return f"{who}, since {self.since}" if self.since else who

    def is_orphan(self) -> bool:
        """Whether its client process was on this host and is gone (killed, crashed)."""
        return self.host == socket.gethostname() and self.pid is not None and not alive(self.pid)


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True


def lock_holder(conn: psycopg.Connection, *parts: str) -> LockHolder | None:
    row = conn.execute(_HOLDER_SQL, (lock_name(*parts),)).fetchone()
    conn.commit()
    if row is None:
        return None
    backend_pid, application_name, _ = row
    since = host = pid = None
    if application_name and application_name.startswith(_HOLDER_PREFIX):
        fields = application_name[len(_HOLDER_PREFIX) :].split(" ")
        since = fields[0]
        if len(fields) > 1 and ":" in fields[1]:
            host, _, raw_pid = fields[1].rpartition(":")
            pid = int(raw_pid) if raw_pid.isdigit() else None
    return LockHolder(backend_pid, since, host, pid)


def _announce(conn: psycopg.Connection) -> None:
    since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    # The host last: PostgreSQL cuts application_name at 63 bytes, the host name may be long.
    name = f"{_HOLDER_PREFIX}{since} {socket.gethostname()}:{os.getpid()}"
    if len(name.encode()) > 63:
        name = f"{_HOLDER_PREFIX}{since} :{os.getpid()}"
    conn.execute("SELECT set_config('application_name', %s, false)", (name,))


def _busy(conn: psycopg.Connection, site: str, wait_s: float) -> SiteBusyError:
    holder = lock_holder(conn, "site", site)
    by = f" ({holder.describe()})" if holder else ""
    return SiteBusyError(
        f"site {site!r}: another sync of this site holds its lock{by}; this run waited "
        f"{wait_s:g} s and leaves the site alone"
    )


def _free_orphan(conn: psycopg.Connection, site: str) -> bool:
    """End the backend holding the site's lock for a client of this host that is gone."""
    holder = lock_holder(conn, "site", site)
    if holder is None or not holder.is_orphan():
        return False
    logger.warning(
        "site %s: its lock is held for process %s, which is gone; ending its session",
        site,
        holder.pid,
    )
    conn.execute("SELECT pg_terminate_backend(%s, 5000)", (holder.backend_pid,))
    conn.commit()
    return True


@contextmanager
def site_lock(
    conn: psycopg.Connection, site: str, *, wait_s: float, poll_s: float = 0.2
) -> Iterator[None]:
    """Hold the site's session-level advisory lock on ``conn`` while the body runs.

    One run writes a site at a time, whatever launched it (a batch, a single-site run from the
    UI, the CLI): the run queue's per-partition limit cannot see the sites inside a ranged run.
    The lock is polled (never a server-side wait without limit) and a session lock dies with
    its connection, so a killed run never leaves a site locked: the server ends the session of
    a client that is gone (at once when its socket closes; during a statement within
    ``client_connection_check_interval``; keepalives for a vanished host), and a lock still held
    for a process of this host that no longer exists is freed here before waiting.
    """
    name = lock_name("site", site)
    deadline = time.monotonic() + wait_s
    orphan_checked = False
    while True:
        acquired = conn.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,)
        ).fetchone()
        conn.commit()
        if acquired and acquired[0]:
            break
        if not orphan_checked:
            orphan_checked = True
            if _free_orphan(conn, site):
                continue
        if time.monotonic() >= deadline:
            raise _busy(conn, site, wait_s)
        time.sleep(poll_s)
    try:
        _announce(conn)
        conn.commit()
        yield
    finally:
        if not conn.closed and not conn.broken:
            try:
                conn.rollback()
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))
                conn.execute("SELECT set_config('application_name', '', false)")
                conn.commit()
            except psycopg.Error:
                conn.close()  # closing the session releases the lock on the server
