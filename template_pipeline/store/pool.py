"""A small pool of the write path's connections, so a batch of sites reuses them.

Opening a PostgreSQL connection costs a backend start and a few milliseconds of client CPU; a
batch of fifty small sites writes eight tables each. Connections are handed out one per thread
at a time (psycopg connections are not shared between threads here), returned idle (a
transaction left open is rolled back), and dropped when broken.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import psycopg
from psycopg.pq import TransactionStatus

from template_pipeline.store import db

MAX_IDLE = 8


class ConnectionPool:
    """Idle connections to one database, at most ``max_idle`` kept."""

    def __init__(self, url: str, max_idle: int = MAX_IDLE) -> None:
        self.url = url
        self.max_idle = max_idle
        self._idle: list[psycopg.Connection] = []
        self._busy: set[psycopg.Connection] = set()
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = db.connect(self.url)
        with self._lock:
            self._busy.add(conn)
        try:
            yield conn
        finally:
            with self._lock:
                self._busy.discard(conn)
            self._give_back(conn)

    def cancel_running(self) -> int:
        """Cancel the statement each handed-out connection is running (a stop was asked for).

        The statement fails with ``QueryCanceled`` in its thread, whose transaction then rolls
        back; an idle connection is not affected. Returns how many connections were signalled.
        """
        with self._lock:
            busy = list(self._busy)
        for conn in busy:
            try:
                conn.cancel_safe(timeout=2.0)
            except (psycopg.Error, OSError):
                conn.close()  # the server ends its session, and rolls its transaction back
        return len(busy)

    def _give_back(self, conn: psycopg.Connection) -> None:
        if not conn.closed and not conn.broken:
            try:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.rollback()
            except psycopg.Error:
                conn.close()
        if conn.closed or conn.broken:
            return
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


@lru_cache(maxsize=16)
def pool_for(url: str) -> ConnectionPool:
    """The process's pool of connections to ``url``."""
    pool = ConnectionPool(url)
    with _pools_lock:
        _pools.append(pool)
    return pool


_pools: list[ConnectionPool] = []
_pools_lock = threading.Lock()


def cancel_all_running() -> int:
    """:meth:`ConnectionPool.cancel_running` on every pool of the process."""
    with _pools_lock:
        pools = list(_pools)
    return sum(pool.cancel_running() for pool in pools)
