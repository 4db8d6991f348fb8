"""Writing one site's snapshot of one entity, atomically, on one psycopg 3 connection.

1. the snapshot's batches are streamed (while the asset is still fetching pages) into a
   temporary staging table with ``COPY``, rejects into one of their own (:mod:`.staging`);
2. a transaction-scoped advisory lock on ``(table, site)`` serialises writers of one site; the
   rejects are folded into ``template_rejects``, one row per distinct bad record, and those
   this snapshot no longer has are resolved (:mod:`.rejects`);
3. duplicate keys in the payload are resolved to their last occurrence;
4. the merge writes only what changed, behind the mass-delete guard (:mod:`.merge`);
5. a ``template_sync_runs`` row records the outcome, and ``template_sync_state`` the latest
   one per site and entity (:mod:`.sync_state`), in the same transaction on success and in a
   separate one when the sync failed or was refused (after the rollback, so the table is
   exactly as it was before).

Nothing is written into a database whose schema is not this release's
(:func:`~template_pipeline.store.schema_version.require_current`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone

import psycopg
from psycopg import sql

from template_pipeline.domain.batches import EntitySnapshot, gc_paused
from template_pipeline.store import db
from template_pipeline.store.derived import stage_order_items
from template_pipeline.store.idents import idents, json_text
from template_pipeline.store.locks import site_table_lock
from template_pipeline.store.merge import Guard, append_history, merge_stage
from template_pipeline.store.rejects import record_rejects
from template_pipeline.store.results import Log, MassDeleteRefusedError, SyncResult
from template_pipeline.store.schema_version import require_current
from template_pipeline.store.staging import create_stage, drop_superseded, load_stage
from template_pipeline.store.sync_state import record_outcome
from template_pipeline.store.tables import (
    SYNC_COUNT_COLUMNS,
    TableSpec,
    table_spec,
    template_sync_runs,
)

logger = logging.getLogger(__name__)

# Enough of an error for an operator to act on; a traceback belongs in the Dagster run logs.
_MAX_ERROR_CHARS = 2000


def write_snapshot(
    database_url: str,
    snapshot: EntitySnapshot,
    *,
    run_id: str,
    max_delete_fraction: float = 0.5,
    min_rows_for_guard: int = 10,
    log: Log | None = None,
    conn: psycopg.Connection | None = None,
) -> SyncResult:
    """Write ``snapshot`` (one site, one entity) atomically and return what changed.

    The guard: a snapshot that would soft-delete more than ``max_delete_fraction`` of the site's
    live rows is refused when the site has at least ``min_rows_for_guard`` live rows. Whatever the
    site's size, a snapshot with no valid row never empties a site that has live rows (a site
    answering ``[]`` is far more often broken than emptied). ``max_delete_fraction >= 1``
    disables both rules.

    Raises :class:`MassDeleteRefusedError` when refused; any error rolls the transaction back
    (the table, the staging rows and this run's rejects disappear together), is recorded in
    ``template_sync_runs`` and re-raised.

    ``conn``: an idle connection of the caller's to work on (its transactions are committed or
    rolled back here; it stays open); by default one is opened and closed for this write.
    """
    spec = table_spec(snapshot.entity)

    def fill(conn: psycopg.Connection, result: SyncResult, guard: Guard) -> None:
        _write(conn, spec, snapshot, result, run_id, guard)

    return _transaction(
        database_url,
        spec,
        snapshot.site,
        run_id,
        fill,
        Guard(max_delete_fraction, min_rows_for_guard),
        log or logger,
        conn,
    )


def derive_order_items(
    database_url: str,
    site: str,
    *,
    run_id: str,
    max_delete_fraction: float = 0.5,
    min_rows_for_guard: int = 10,
    log: Log | None = None,
    conn: psycopg.Connection | None = None,
) -> SyncResult:
    """Rebuild the site's ``template_order_items`` from its stored orders, like a snapshot."""
    spec = table_spec("order_items")

    def fill(conn: psycopg.Connection, result: SyncResult, guard: Guard) -> None:
        cur = conn.cursor()
        lines = stage_order_items(cur, site)
        result.fetched = result.valid = lines
        site_table_lock(cur, spec.name, site)
        merge_stage(cur, spec, site, result, run_id, guard)

    return _transaction(
        database_url,
        spec,
        site,
        run_id,
        fill,
        Guard(max_delete_fraction, min_rows_for_guard),
        log or logger,
        conn,
    )


def order_items_current(conn: psycopg.Connection, site: str) -> bool:
    """Whether the site's order lines were rebuilt after the last change of its orders."""
    runs = sql.Identifier(template_sync_runs.name)
    row = conn.execute(
        sql.SQL(
            "SELECT "
            "max(finished_at) FILTER (WHERE entity = 'order_items'), "
            "max(finished_at) FILTER (WHERE entity = 'orders' "
            "AND inserted + updated + deleted + restored > 0) "
            "FROM {runs} WHERE site = %s AND status = 'success'"
        ).format(runs=runs),
        (site,),
    ).fetchone()
    conn.commit()
    built, changed = row if row else (None, None)
    return built is not None and (changed is None or built >= changed)


def record_unchanged(conn: psycopg.Connection, site: str, entity: str, run_id: str) -> SyncResult:
    """Record that a sync found the site's ``entity`` unchanged without restaging it."""
    spec = table_spec(entity)
    started = datetime.now(timezone.utc)
    live = conn.execute(
        sql.SQL("SELECT count(*) FROM {table} WHERE site = %s AND deleted_at IS NULL").format(
            table=sql.Identifier(spec.name)
        ),
        (site,),
    ).fetchone()
    count = int(live[0]) if live else 0
    result = SyncResult(
        site=site,
        entity=entity,
        status="success",
        fetched=count,
        valid=count,
        unchanged=count,
        live_rows=count,
        started_at=started,
        finished_at=datetime.now(timezone.utc),
        table=spec.name,
        run_id=run_id,
    )
    _insert_sync_run(conn, result, error=None)
    conn.commit()
    return result


def _transaction(
    database_url: str,
    spec: TableSpec,
    site: str,
    run_id: str,
    fill: Callable[[psycopg.Connection, SyncResult, Guard], None],
    guard: Guard,
    log: Log,
    conn: psycopg.Connection | None,
) -> SyncResult:
    """Run ``fill`` in one transaction and record its outcome in ``template_sync_runs``."""
    if guard.max_delete_fraction < 0:
        raise ValueError(f"max_delete_fraction must be >= 0, not {guard.max_delete_fraction}")
    if guard.min_rows_for_guard < 0:
        raise ValueError(f"min_rows_for_guard must be >= 0, not {guard.min_rows_for_guard}")
    result = SyncResult(
        site=site,
        entity=spec.entity,
        status="success",
        started_at=datetime.now(timezone.utc),
        table=spec.name,
        run_id=run_id,
    )
    clock = time.perf_counter()
    require_current(database_url)
    with contextlib.ExitStack() as owned:
        if conn is None:
            conn = owned.enter_context(db.connect(database_url))
        try:
            with gc_paused():
                fill(conn, result, guard)
            _finish(result, clock)
            _insert_sync_run(conn, result, error=None)
            conn.commit()
        except MassDeleteRefusedError as exc:
            _record_outcome(conn, database_url, result, "refused", exc, clock, log)
            raise
        except Exception as exc:
            _record_outcome(conn, database_url, result, "failed", exc, clock, log)
            raise
        except BaseException:
            # An interrupted run (Dagster termination, Ctrl-C): leave the table as it was.
            _rollback_quietly(conn)
            raise
    _log_result(log, result)
    return result


def _log_result(log: Log, result: SyncResult) -> None:
    log.info(
        "%s of site %s: %d fetched, %d valid, %d rejected, %d duplicates, %d inserted, "
        "%d updated, %d unchanged, %d deleted, %d restored in %.2fs",
        result.entity,
        result.site,
        result.fetched,
        result.valid,
        result.rejected,
        result.duplicates,
        result.inserted,
        result.updated,
        result.unchanged,
        result.deleted,
        result.restored,
        result.duration_s,
    )
    if result.new_fields:
        log.warning(
            "%s of site %s: fields the models do not know yet (kept in extra): %s",
            result.entity,
            result.site,
            ", ".join(result.new_fields),
        )


def _write(
    conn: psycopg.Connection,
    spec: TableSpec,
    snapshot: EntitySnapshot,
    result: SyncResult,
    run_id: str,
    guard: Guard,
) -> None:
    site = snapshot.site
    cur = conn.cursor()
    create_stage(cur, spec)
    staged = load_stage(cur, spec, snapshot, result)
    changes = snapshot.changes
    if changes is not None:
        # The records let off as unchanged were received and are valid, as they were.
        result.fetched += changes.skipped
        result.valid += changes.skipped
    # Writers of one site queue here, after staging: the (slow, network-bound) stream only
    # touches this session's temporary table, so two runs of one site may fetch at the same
    # time and only their merges take turns. Every read of the target comes after the lock, so
    # each merge sees the previous one committed.
    site_table_lock(cur, spec.name, site)
    record_rejects(cur, site, spec.entity, run_id, staged=staged.rejects)
    if spec.mode == "append":
        append_history(cur, spec, site, result, run_id)
        return
    result.duplicates = drop_superseded(cur, staged.losers)
    if changes is not None:
        result.duplicates = changes.duplicates
    merge_stage(cur, spec, site, result, run_id, guard, changes, staged.keys)


def _finish(result: SyncResult, clock: float) -> None:
    result.finished_at = datetime.now(timezone.utc)
    result.duration_s = time.perf_counter() - clock


def _insert_sync_run(conn: psycopg.Connection, result: SyncResult, error: str | None) -> None:
    columns = (
        "site",
        "entity",
        "run_id",
        "status",
        *SYNC_COUNT_COLUMNS,
        "new_fields",
        "error",
        "started_at",
        "finished_at",
    )
    values = (
        result.site,
        result.entity,
        result.run_id,
        result.status,
        *result.counts().values(),
        json_text(list(result.new_fields)),
        error,
        result.started_at,
        result.finished_at,
    )
    conn.execute(
        sql.SQL("INSERT INTO {table} ({cols}) VALUES ({params})").format(
            table=sql.Identifier(template_sync_runs.name),
            cols=idents(columns),
            params=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        ),
        values,
    )
    record_outcome(conn, result, error)


def _rollback_quietly(conn: psycopg.Connection) -> None:
    try:
        conn.rollback()
    except psycopg.Error:  # a broken connection: closing it rolls back on the server anyway
        logger.debug("rollback failed; the connection is closed", exc_info=True)


def _record_outcome(
    conn: psycopg.Connection,
    database_url: str,
    result: SyncResult,
    status: str,
    exc: BaseException,
    clock: float,
    log: Log,
) -> None:
    """Roll back, then record a failed or refused sync in its own short transaction.

    Only what is known without the rolled-back work is kept: the stream's counts and, for a
    refusal, the number of rows the snapshot would have deleted.
    """
    _rollback_quietly(conn)
    result.status = status
    result.inserted = result.updated = result.unchanged = result.restored = 0
    if status != "refused":
        result.deleted = 0
    result.live_rows = 0
    result.preview = []
    _finish(result, clock)
    error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
    try:
        if conn.broken or conn.closed:
            with db.connect(database_url) as fresh:
                _insert_sync_run(fresh, result, error)
        else:
            _insert_sync_run(conn, result, error)
            conn.commit()
    except Exception:
        # The original error matters more than its record: log this one and let that one raise.
        logger.exception(
            "could not record the %s sync of %s for site %s", status, result.entity, result.site
        )
        _rollback_quietly(conn)
    log.warning(
        "%s of site %s: sync %s after %.2fs: %s",
        result.entity,
        result.site,
        status,
        result.duration_s,
        error,
    )
