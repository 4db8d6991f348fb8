"""The merge: the deduplicated staging table applied to a site's rows, writing only what changed.

Set-based statements soft-delete rows the site no longer serves, restore rows that came back,
update rows whose content changed and insert new keys. Unchanged rows are not written at all (no
new row version), so a re-sync of an unchanged site is cheap and leaves no trace. The mass-delete
guard decides before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import psycopg
from psycopg import sql

from template_pipeline.store.idents import idents
from template_pipeline.store.results import MassDeleteRefusedError, SyncResult
from template_pipeline.store.staging import ORD, ORD_ID, STAGE
from template_pipeline.store.tables import TableSpec


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
class _Fragments:
    """The pieces of SQL every statement of one table's merge shares (identifiers only)."""

    table: sql.Identifier
    key_match: sql.Composable  # t.<key> = s.<key> AND ...
    changed: sql.Composable  # (t.<compared>) IS DISTINCT FROM (s.<compared>)
    assign: sql.Composable  # <compared> = s.<compared>, ...
    cols: sql.Composable  # the data columns
    s_cols: sql.Composable  # s.<data columns>
    t_key: sql.Identifier
    s_ord: sql.Identifier


@cache
def _fragments(spec: TableSpec) -> _Fragments:
    compared = spec.compared_columns
    return _Fragments(
        table=sql.Identifier(spec.name),
        key_match=sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier("t", k), sql.Identifier("s", k))
            for k in spec.keys
        ),
        changed=sql.SQL("({}) IS DISTINCT FROM ({})").format(
            idents(compared, "t"), idents(compared, "s")
        ),
        assign=sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("s", c)) for c in compared
        ),
        cols=idents(spec.data_columns),
        s_cols=idents(spec.data_columns, "s"),
        t_key=sql.Identifier("t", spec.keys[0]),
        s_ord=sql.Identifier("s", ORD),
    )


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
    max_delete_fraction: float,
    min_rows_for_guard: int,
) -> None:
    """Apply the deduplicated staging table to the site's rows, writing only what changed."""
    f = _fragments(spec)
    plan = _classify(cur, f, site)
    distinct_rows = result.valid - result.duplicates
    if refuse(
        plan.live_before, plan.to_delete, distinct_rows, max_delete_fraction, min_rows_for_guard
    ):
        result.deleted = plan.to_delete
        raise MassDeleteRefusedError(
            site=site,
            entity=spec.entity,
            live_rows=plan.live_before,
            to_delete=plan.to_delete,
            max_delete_fraction=max_delete_fraction,
            min_rows_for_guard=min_rows_for_guard,
        )
    # Only the statements with work to do run: an unchanged re-sync stops after _classify.
    if plan.to_delete:
        result.deleted = _soft_delete(cur, f, site, run_id)
    if plan.to_restore:
        result.restored = _restore(cur, f, site, run_id)
    if plan.to_update:
        result.updated = _update(cur, f, site, run_id)
    if plan.to_insert:
        result.inserted = _insert(cur, f, site, run_id)
    result.unchanged = distinct_rows - result.inserted - result.updated - result.restored
    result.live_rows = plan.live_before - result.deleted + result.inserted + result.restored


def _classify(cur: psycopg.Cursor, f: _Fragments, site: str) -> _Plan:
    """One pass over staging and the site's rows classifies every key."""
    cur.execute(
        sql.SQL(
            "SELECT "
            "count(*) FILTER (WHERE {t_key} IS NOT NULL AND t.deleted_at IS NULL), "
            "count(*) FILTER (WHERE {s_ord} IS NULL AND t.deleted_at IS NULL), "
            "count(*) FILTER (WHERE {s_ord} IS NOT NULL AND t.deleted_at IS NOT NULL), "
            "count(*) FILTER (WHERE {s_ord} IS NOT NULL AND {t_key} IS NOT NULL "
            "AND t.deleted_at IS NULL AND {changed}), "
            "count(*) FILTER (WHERE {t_key} IS NULL) "
            "FROM {stage} s FULL JOIN "
            "(SELECT {cols}, deleted_at FROM {table} WHERE site = %s) t ON {match}"
        ).format(
            t_key=f.t_key,
            s_ord=f.s_ord,
            changed=f.changed,
            stage=STAGE,
            cols=f.cols,
            table=f.table,
            match=f.key_match,
        ),
        (site,),
    )
    row = cur.fetchone()
    assert row is not None  # an aggregate always returns one row
    return _Plan(*(int(n) for n in row))


def _soft_delete(cur: psycopg.Cursor, f: _Fragments, site: str, run_id: str) -> int:
    cur.execute(
        sql.SQL(
            "UPDATE {table} t SET deleted_at = now(), synced_at = now(), last_run_id = %s "
            "WHERE t.site = %s AND t.deleted_at IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE {match})"
        ).format(table=f.table, stage=STAGE, match=f.key_match),
        (run_id, site),
    )
    return cur.rowcount


def _restore(cur: psycopg.Cursor, f: _Fragments, site: str, run_id: str) -> int:
    # Rows that come back take the new content; updated_at moves only if that content differs
    # from what was kept when the row was deleted.
    cur.execute(
        sql.SQL(
            "UPDATE {table} t SET {assign}, deleted_at = NULL, "
            "updated_at = CASE WHEN {changed} THEN now() ELSE t.updated_at END, "
            "synced_at = now(), last_run_id = %s "
            "FROM {stage} s WHERE t.site = %s AND {match} AND t.deleted_at IS NOT NULL"
        ).format(table=f.table, assign=f.assign, changed=f.changed, stage=STAGE, match=f.key_match),
        (run_id, site),
    )
    return cur.rowcount


def _update(cur: psycopg.Cursor, f: _Fragments, site: str, run_id: str) -> int:
    # The IS DISTINCT FROM filter is what keeps unchanged rows unwritten (no new row version,
    # no WAL); INSERT ... ON CONFLICT DO UPDATE would lock, so rewrite, each one.
    cur.execute(
        sql.SQL(
            "UPDATE {table} t SET {assign}, updated_at = now(), synced_at = now(), "
            "last_run_id = %s FROM {stage} s "
            "WHERE t.site = %s AND {match} AND t.deleted_at IS NULL AND {changed}"
        ).format(table=f.table, assign=f.assign, stage=STAGE, match=f.key_match, changed=f.changed),
        (run_id, site),
    )
    return cur.rowcount


def _insert(cur: psycopg.Cursor, f: _Fragments, site: str, run_id: str) -> int:
    cur.execute(
        sql.SQL(
            "INSERT INTO {table} "
            "(site, {cols}, first_seen_at, updated_at, synced_at, last_run_id) "
            "SELECT %s, {s_cols}, now(), now(), now(), %s FROM {stage} s "
            "WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.site = %s AND {match})"
        ).format(table=f.table, cols=f.cols, s_cols=f.s_cols, stage=STAGE, match=f.key_match),
        (site, run_id, site),
    )
    return cur.rowcount


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
