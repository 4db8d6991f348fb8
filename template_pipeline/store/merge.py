"""The merge: the deduplicated staging table applied to a site's rows, writing only what changed.

Set-based statements soft-delete rows the site no longer serves, restore rows that came back,
update rows whose content changed and insert new keys. Unchanged rows are not written at all (no
new row version), so a re-sync of an unchanged site is cheap and leaves no trace. The mass-delete
guard decides before anything is written.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from template_pipeline.domain.changes import ChangeFilter
from template_pipeline.store import merge_sql
from template_pipeline.store.idents import idents
from template_pipeline.store.results import MassDeleteRefusedError, SyncResult
from template_pipeline.store.staging import ORD_ID, STAGE
from template_pipeline.store.tables import TableSpec

logger = logging.getLogger(__name__)

# A committed write of at least this many rows, and of this share of the site's live rows,
# analyzes its table (autovacuum's own analyze threshold is 50 rows + 10 %).
ANALYZE_MIN_WRITTEN = 1000
ANALYZE_MIN_FRACTION = 0.1


def append_history(
    cur: psycopg.Cursor, spec: TableSpec, site: str, result: SyncResult, run_id: str
) -> None:
    """Append the staged rows of an append-only table (``template_stats``)."""
    table = sql.Identifier(spec.name)
    # History of what the site reported: a snapshot identical to the site's latest row adds
    # nothing (an unchanged re-sync writes no row; freshness lives in template_sync_runs).
    cur.execute(
        sql.SQL(
            "INSERT INTO {table} (site, run_id, {cols}) "
            "SELECT %s, %s, {scols} FROM {stage} AS s "
            "WHERE NOT EXISTS ("
            " SELECT 1 FROM (SELECT {cols} FROM {table} WHERE site = %s"
            " ORDER BY id DESC LIMIT 1) AS latest"
            " WHERE ({lcols}) IS NOT DISTINCT FROM ({scols})) "
            "ORDER BY {ord}"
        ).format(
            table=table,
            cols=idents(spec.data_columns),
            scols=idents(spec.data_columns, "s"),
            lcols=idents(spec.data_columns, "latest"),
            stage=STAGE,
            ord=ORD_ID,
        ),
        (site, run_id, site),
    )
    result.inserted = cur.rowcount
    result.unchanged = result.valid - result.inserted
    result.live_rows = count_rows(cur, table, site, live_only=False)


def count_rows(cur: psycopg.Cursor, table: sql.Identifier, site: str, *, live_only: bool) -> int:
    live = sql.SQL(" AND deleted_at IS NULL" if live_only else "")
    cur.execute(
        sql.SQL("SELECT count(*) FROM {table} WHERE site = %s{live}").format(
            table=table, live=live
        ),
        (site,),
    )
    row = cur.fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class _Plan:
    """How many keys each statement would touch, counted before anything is written."""

    live_before: int
    to_delete: int
    to_restore: int
    to_update: int
    to_insert: int


def merge_stage(
    cur: psycopg.Cursor,
    spec: TableSpec,
    site: str,
    result: SyncResult,
    run_id: str,
    guard: Guard,
    changes: ChangeFilter | None = None,
    staged_keys: Iterable[Any] = (),
) -> None:
    """Apply the deduplicated staging table to the site's rows, writing only what changed.

    With ``changes`` (the asset filtered unchanged records out), the stage holds only new and
    changed records: the rows the site stopped serving are the live rows whose key is neither
    staged nor among the unchanged ones, found from the hashes loaded before the sync.
    """
    f = merge_sql.fragments(spec)
    deleted_keys: list[Any] | None = None
    if changes is None:
        plan = _Plan(*merge_sql.classify_full(cur, f, spec, site))
        kept = result.valid - result.duplicates
    else:
        normalise = changes.known.normalise
        present = set(changes.unchanged)
        present.update(normalise(key) for key in staged_keys)
        deleted_keys = [key for key in changes.known.hashes if key not in present]
        plan = _Plan(
            len(changes.known.hashes), len(deleted_keys), *merge_sql.classify_staged(cur, f, site)
        )
        kept = len(present)
    guard.check(spec.entity, site, plan.live_before, plan.to_delete, kept, result)
    # Only the statements with work to do run: an unchanged re-sync writes nothing.
    if plan.to_delete:
        result.deleted = (
            merge_sql.soft_delete_missing(cur, f, site, run_id)
            if deleted_keys is None
            else merge_sql.soft_delete_keys(cur, f, site, run_id, deleted_keys)
        )
    if plan.to_restore:
        result.restored = merge_sql.restore(cur, f, site, run_id)
    if plan.to_update:
        result.updated = merge_sql.update(cur, f, site, run_id)
    if plan.to_insert:
        result.inserted = merge_sql.insert(cur, f, site, run_id)
    result.unchanged = kept - result.inserted - result.updated - result.restored
    result.live_rows = plan.live_before - result.deleted + result.inserted + result.restored


@dataclass(frozen=True)
class Guard:
    """The mass-delete guard's settings (see ``writer.write_snapshot``)."""

    max_delete_fraction: float = 0.5
    min_rows_for_guard: int = 10

    def check(
        self, entity: str, site: str, live: int, to_delete: int, kept: int, result: SyncResult
    ) -> None:
        if refuse(live, to_delete, kept, self.max_delete_fraction, self.min_rows_for_guard):
            result.deleted = to_delete
            raise MassDeleteRefusedError(
                site=site,
                entity=entity,
                live_rows=live,
                to_delete=to_delete,
                max_delete_fraction=self.max_delete_fraction,
                min_rows_for_guard=self.min_rows_for_guard,
            )


def refuse(
    live: int, to_delete: int, kept: int, max_delete_fraction: float, min_rows_for_guard: int
) -> bool:
    """The mass-delete guard (see ``writer.write_snapshot``)."""
    if to_delete == 0 or max_delete_fraction >= 1:
        return False
    if kept == 0:
        return True
    if live < min_rows_for_guard:
        return False
    return to_delete > max_delete_fraction * live


def analyze_after_write(conn: psycopg.Connection, spec: TableSpec, result: SyncResult) -> bool:
    """ANALYZE the target after a large committed write, so the next merge is planned on the
    table as it is now (a site much larger than what the statistics last saw is otherwise
    estimated as a handful of rows: nested loops). True when it ran.

    Runs after the commit, in its own short transaction: ANALYZE takes a lock that another
    ANALYZE (or autovacuum) of the same table holds too, and a sync must never queue behind
    one: with ``lock_timeout`` it is skipped instead, the other one does the job. A failure is
    logged, never raised: the write is already committed.
    """
    written = result.inserted + result.updated + result.deleted + result.restored
    if written < ANALYZE_MIN_WRITTEN or written < ANALYZE_MIN_FRACTION * result.live_rows:
        return False
    # The columns the merges filter and join on: a fraction of a full ANALYZE's time (the
    # daemon's autoanalyze, when it runs, covers the others).
    columns = ("site", *spec.keys, *(("deleted_at",) if spec.mode == "merge" else ()))
    try:
        conn.execute("SET LOCAL lock_timeout = '200ms'")
        conn.execute(
            sql.SQL("ANALYZE {table} ({cols})").format(
                table=sql.Identifier(spec.name), cols=idents(columns)
            )
        )
        conn.commit()
    except psycopg.Error as exc:
        logger.debug("ANALYZE %s skipped: %s", spec.name, exc)
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        return False
    return True
