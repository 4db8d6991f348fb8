"""No database wait without limit, no lock that outlives its client.

Behaviour under test: every Dashboard connection (the write path's and the engines') opens with
the statement, lock and idle-in-transaction timeouts of ``TEMPLATE_DB_*``, TCP keepalives and a
connect timeout; a statement over its limit and a lock wait over its limit fail instead of
waiting; a site's lock held by a client that was killed (idle, or in the middle of a long
statement) is gone within a few seconds; a lock still held for a process of this host that no
longer exists is freed by the next sync of the site; a sync that cannot get a site's lock in
time says who holds it and since when.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
import sqlalchemy as sa

from template_pipeline.store import db
from template_pipeline.store.locks import SiteBusyError, lock_holder, lock_name, site_lock

# Bounds of the waits in this module: a poll interval and a deadline, never an open-ended loop.
_POLL_S = 0.1


def _site_lock_held(url: str, site: str) -> bool:
    with db.connect(url) as conn:
        holder = lock_holder(conn, "site", site)
    return holder is not None


def _wait_until(predicate, timeout_s: float) -> float:
    """Seconds until ``predicate()`` is true; fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"not true within {timeout_s} s")
        time.sleep(_POLL_S)
    return time.monotonic() - started


def test_every_connection_carries_the_limits(url):
    expected = {
        "statement_timeout": "15min",
        "lock_timeout": "1min",
        "idle_in_transaction_session_timeout": "2min",
        "tcp_keepalives_idle": "30",
        "tcp_keepalives_interval": "10",
        "tcp_keepalives_count": "3",
        "client_connection_check_interval": "2s",
    }
    with db.connect(url) as conn:
        if conn.info.host.startswith("/"):  # a Unix socket (the embedded server): no TCP
            expected.update(dict.fromkeys(("tcp_keepalives_idle", "tcp_keepalives_interval"), "0"))
            expected["tcp_keepalives_count"] = "0"
        raw = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in expected}
        assert conn.info.get_parameters()["connect_timeout"] == "10"
        assert conn.info.get_parameters()["keepalives"] == "1"
    with db.get_engine(url).connect() as conn:
        pooled = {name: conn.execute(sa.text(f"SHOW {name}")).scalar() for name in expected}
    assert raw == pooled == expected


def test_a_statement_over_its_limit_fails(url, monkeypatch):
    monkeypatch.setenv("TEMPLATE_DB_STATEMENT_TIMEOUT_S", "0.5")
    with db.connect(url) as conn:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            conn.execute("SELECT pg_sleep(30)")
    assert time.monotonic() - started < 10


def test_a_lock_wait_over_its_limit_fails(url, site, monkeypatch):
    monkeypatch.setenv("TEMPLATE_DB_LOCK_TIMEOUT_S", "0.5")
    with db.connect(url) as holder, db.connect(url) as waiter:
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (site,))
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable, match="lock timeout"):
            waiter.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (site,))
        assert time.monotonic() - started < 10


def test_a_bad_limit_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("TEMPLATE_DB_LOCK_TIMEOUT_S", "-1")
    with pytest.raises(db.DatabaseConfigError, match="TEMPLATE_DB_LOCK_TIMEOUT_S"):
        db.connect_options()


def test_url_options_are_kept_beside_the_limits():
    options = db.connect_options("postgresql://u@h/d?options=-c%20work_mem%3D8MB")["options"]
    assert options.startswith("-c work_mem=8MB -c statement_timeout=900000 ")


_HOLDER = textwrap.dedent(
    """
    import sys
    from template_pipeline.store import db
    from template_pipeline.store.locks import site_lock

    url, site, busy = sys.argv[1:4]
    conn = db.connect(url)
    with site_lock(conn, site, wait_s=5):
        print("locked", flush=True)
        if busy == "busy":
            conn.execute("SELECT pg_sleep(600)")  # a long statement (a slow merge)
        else:
            sys.stdin.read()  # idle, holding the lock
    """
)


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_a_killed_clients_lock_is_gone_within_seconds(url, site, state):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, site, state],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert _site_lock_held(url, site)
        if state == "busy":
            _wait_until(lambda: _statement_running(url, "pg_sleep(600)"), 10)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        # The backend notices at once (idle) or within client_connection_check_interval (2 s).
        assert _wait_until(lambda: not _site_lock_held(url, site), 8) < 8
        assert not _statement_running(url, "pg_sleep(600)")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
    with db.connect(url) as conn, site_lock(conn, site, wait_s=0):
        assert lock_holder(conn, "site", site) is not None


def _statement_running(url: str, text: str) -> bool:
    with db.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
            "AND pid <> pg_backend_pid()",
            (f"%{text}%",),
        ).fetchone()
    return bool(row and row[0])


def test_a_lock_held_for_a_dead_process_of_this_host_is_freed(url, site):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)  # a pid that existed and is gone now
    with db.connect(url) as orphan:
        orphan.execute(
            "SELECT pg_advisory_lock(hashtextextended(%s, 0))", (lock_name("site", site),)
        )
        orphan.execute(
            "SELECT set_config('application_name', %s, false)",
            (f"template-pipeline lock 2026-01-01T00:00:00Z {os.uname().nodename}:{gone.pid}",),
        )
        orphan.commit()
        with db.connect(url) as conn:
            holder = lock_holder(conn, "site", site)
            assert holder is not None and holder.pid == gone.pid and holder.is_orphan()
            with site_lock(conn, site, wait_s=5):
                assert lock_holder(conn, "site", site).backend_pid == conn.info.backend_pid
        assert orphan.closed or orphan.broken or _closed_by_server(orphan)


def _closed_by_server(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def test_a_busy_site_names_who_holds_it_and_since_when(url, site):
    with (
        db.connect(url) as holder,
        site_lock(holder, site, wait_s=1),
        db.connect(url) as conn,
        pytest.raises(SiteBusyError) as raised,
        site_lock(conn, site, wait_s=0.3),
    ):
        pytest.fail("the lock is held")
    message = str(raised.value)
    assert message.startswith(f"site {site!r}: another sync of this site holds its lock (")
    assert f"process {os.getpid()} on " in message and ", since 20" in message
    assert "waited 0.3 s" in message
    assert not _site_lock_held(url, site)
