"""``template_sync_state``: the latest outcome of each (site, entity), kept with its sync.

The write path calls :func:`record_outcome` beside its ``template_sync_runs`` row: in the
transaction of a successful write (so ``last_success_at``, the Dashboard's ``sync_timestamp``,
moves exactly when the data it vouches for is committed), and in the short transaction that
records a failed or refused attempt. One row per (site, entity), upserted: this bookkeeping row
is rewritten by every sync, which is what lets an unchanged re-sync leave the entity rows alone.

An attempt older than the one already recorded changes nothing: a failure recorded late, after
its transaction was rolled back, must not hide a later success.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from psycopg import sql

from template_pipeline.store.results import SyncResult
from template_pipeline.store.tables import template_sync_runs, template_sync_state

_TABLE = sql.Identifier(template_sync_state.name)

_SUCCESS = sql.SQL(
    "INSERT INTO {table} AS s (site, entity, last_success_at, last_run_id, last_attempt_at, "
    "last_status, consecutive_failures, last_error, last_error_kind) "
    "VALUES (%(site)s, %(entity)s, %(at)s, %(run_id)s, %(at)s, %(status)s, 0, NULL, NULL) "
    "ON CONFLICT (site, entity) DO UPDATE SET last_success_at = EXCLUDED.last_success_at, "
    "last_run_id = EXCLUDED.last_run_id, last_attempt_at = EXCLUDED.last_attempt_at, "
    "last_status = EXCLUDED.last_status, consecutive_failures = 0, last_error = NULL, "
    "last_error_kind = NULL "
    "WHERE s.last_attempt_at <= EXCLUDED.last_attempt_at"
).format(table=_TABLE)

_FAILURE = sql.SQL(
    "INSERT INTO {table} AS s (site, entity, last_success_at, last_run_id, last_attempt_at, "
    "last_status, consecutive_failures, last_error, last_error_kind) "
    "VALUES (%(site)s, %(entity)s, NULL, NULL, %(at)s, %(status)s, 1, %(error)s, %(kind)s) "
    "ON CONFLICT (site, entity) DO UPDATE SET last_attempt_at = EXCLUDED.last_attempt_at, "
    "last_status = EXCLUDED.last_status, "
    "consecutive_failures = s.consecutive_failures + 1, last_error = EXCLUDED.last_error, "
    "last_error_kind = EXCLUDED.last_error_kind "
    "WHERE s.last_attempt_at <= EXCLUDED.last_attempt_at"
).format(table=_TABLE)


class _Executes(Protocol):
    def execute(self, query: sql.Composable, params: dict[str, object]) -> object: ...


def record_outcome(
    conn: _Executes, result: SyncResult, error: str | None, error_kind: str | None = None
) -> None:
    """Upsert the (site, entity) state row for ``result`` (on the caller's transaction).

    A successful result sets ``last_success_at`` (its ``finished_at``, the same instant as its
    ``template_sync_runs`` row) and clears the failure streak; a failed or refused one counts
    one more consecutive failure and keeps ``last_success_at``.
    """
    params: dict[str, object] = {
        "site": result.site,
        "entity": result.entity,
        "at": result.finished_at,
        "run_id": result.run_id,
        "status": result.status,
        "error": error,
        "kind": error_kind,
    }
    conn.execute(_SUCCESS if result.status == "success" else _FAILURE, params)


_RUNS = sql.Identifier(template_sync_runs.name)

# The write path recorded the failed attempt already, without its kind: name it.
_NAME_KIND = sql.SQL(
    "UPDATE {runs} SET error_kind = %(kind)s WHERE site = %(site)s AND entity = %(entity)s "
    "AND run_id = %(run_id)s AND status <> 'success' AND error_kind IS NULL"
).format(runs=_RUNS)
_NAME_STATE_KIND = sql.SQL(
    "UPDATE {table} SET last_error_kind = %(kind)s WHERE site = %(site)s "
    "AND entity = %(entity)s AND last_status <> 'success'"
).format(table=_TABLE)
_INSERT_FAILED = sql.SQL(
    "INSERT INTO {runs} (site, entity, run_id, status, error, error_kind, started_at, "
    "finished_at) VALUES (%(site)s, %(entity)s, %(run_id)s, 'failed', %(error)s, %(kind)s, "
    "%(started_at)s, %(at)s)"
).format(runs=_RUNS)


def record_failure(
    conn: _Executes,
    *,
    site: str,
    entity: str,
    run_id: str,
    kind: str,
    error: str,
    at: datetime,
    started_at: datetime | None = None,
) -> None:
    """Record why ``entity`` of ``site`` failed in ``run_id`` (on the caller's transaction).

    A failure the write path already recorded (its rows rolled back, its attempt kept) gets its
    kind; one that never reached it (a refused key, an unreachable site, a blocking check
    upstream) gets its ``template_sync_runs`` row and counts in the failure streak.
    """
    params: dict[str, object] = {
        "site": site,
        "entity": entity,
        "run_id": run_id,
        "kind": kind,
        "error": error,
        "at": at,
        "started_at": started_at or at,
    }
    cur = conn.execute(_NAME_KIND, params)
    if getattr(cur, "rowcount", 0):
        conn.execute(_NAME_STATE_KIND, params)
        return
    conn.execute(_INSERT_FAILED, params)
    params.update(status="failed", run_id=None)
    conn.execute(_FAILURE, params)
