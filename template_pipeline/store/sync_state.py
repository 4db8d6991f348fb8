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

from typing import Protocol

from psycopg import sql

from template_pipeline.store.results import SyncResult
from template_pipeline.store.tables import template_sync_state

_TABLE = sql.Identifier(template_sync_state.name)

_SUCCESS = sql.SQL(
    "INSERT INTO {table} AS s (site, entity, last_success_at, last_run_id, last_attempt_at, "
    "last_status, consecutive_failures, last_error) "
    "VALUES (%(site)s, %(entity)s, %(at)s, %(run_id)s, %(at)s, %(status)s, 0, NULL) "
    "ON CONFLICT (site, entity) DO UPDATE SET last_success_at = EXCLUDED.last_success_at, "
    "last_run_id = EXCLUDED.last_run_id, last_attempt_at = EXCLUDED.last_attempt_at, "
    "last_status = EXCLUDED.last_status, consecutive_failures = 0, last_error = NULL "
    "WHERE s.last_attempt_at <= EXCLUDED.last_attempt_at"
).format(table=_TABLE)

_FAILURE = sql.SQL(
    "INSERT INTO {table} AS s (site, entity, last_success_at, last_run_id, last_attempt_at, "
    "last_status, consecutive_failures, last_error) "
    "VALUES (%(site)s, %(entity)s, NULL, NULL, %(at)s, %(status)s, 1, %(error)s) "
    "ON CONFLICT (site, entity) DO UPDATE SET last_attempt_at = EXCLUDED.last_attempt_at, "
    "last_status = EXCLUDED.last_status, "
    "consecutive_failures = s.consecutive_failures + 1, last_error = EXCLUDED.last_error "
    "WHERE s.last_attempt_at <= EXCLUDED.last_attempt_at"
).format(table=_TABLE)


class _Executes(Protocol):
    def execute(self, query: sql.Composable, params: dict[str, object]) -> object: ...


def record_outcome(conn: _Executes, result: SyncResult, error: str | None) -> None:
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
    }
    conn.execute(_SUCCESS if result.status == "success" else _FAILURE, params)
