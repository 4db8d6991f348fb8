"""The merge: the deduplicated staging table applied to a site's rows, writing only what changed.

Set-based statements soft-delete rows the site no longer serves, restore rows that came back,
update rows whose content changed and insert new keys. Unchanged rows are not written at all (no
new row version), so a re-sync of an unchanged site is cheap and leaves no trace. The mass-delete
guard decides before anything is written.
"""

from __future__ import annotations

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
    table = sql.Identifier(spec.name)
    key_match = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier("t", k), sql.Identifier("s", k)) for k in spec.keys
    )
    compared = spec.compared_columns
    changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
        idents(compared, "t"), idents(compared, "s")
    )
    assign = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("s", c)) for c in compared
    )
    t_key = sql.Identifier("t", spec.keys[0])
    s_ord = sql.Identifier("s", ORD)

    # One pass over staging and the site's rows classifies every key. An unchanged re-sync
    # stops here; otherwise only the statements with work to do run, and the guard decides
    # before anything is written.
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
            t_key=t_key,
            s_ord=s_ord,
            changed=changed,
            stage=STAGE,
            cols=idents(spec.data_columns),
            table=table,
            match=key_match,
        ),
        (site,),
    )
    row = cur.fetchone()
    assert row is not None  # an aggregate always returns one row
    live_before, to_delete, to_restore, to_update, to_insert = (int(n) for n in row)
    distinct_rows = result.valid - result.duplicates

    if refuse(live_before, to_delete, distinct_rows, max_delete_fraction, min_rows_for_guard):
        result.deleted = to_delete
        raise MassDeleteRefusedError(
            site=site,
            entity=spec.entity,
            live_rows=live_before,
            to_delete=to_delete,
            max_delete_fraction=max_delete_fraction,
            min_rows_for_guard=min_rows_for_guard,
        )

    if to_delete:
        cur.execute(
            sql.SQL(
                "UPDATE {table} t SET deleted_at = now(), synced_at = now(), last_run_id = %s "
                "WHERE t.site = %s AND t.deleted_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE {match})"
            ).format(table=table, stage=STAGE, match=key_match),
            (run_id, site),
        )
        result.deleted = cur.rowcount

    if to_restore:
        # Rows that come back take the new content; updated_at moves only if that content
        # differs from what was kept when the row was deleted.
        cur.execute(
            sql.SQL(
                "UPDATE {table} t SET {assign}, deleted_at = NULL, "
                "updated_at = CASE WHEN {changed} THEN now() ELSE t.updated_at END, "
                "synced_at = now(), last_run_id = %s "
                "FROM {stage} s WHERE t.site = %s AND {match} AND t.deleted_at IS NOT NULL"
            ).format(table=table, assign=assign, changed=changed, stage=STAGE, match=key_match),
            (run_id, site),
        )
        result.restored = cur.rowcount

    if to_update:
        # The IS DISTINCT FROM filter is what keeps unchanged rows unwritten (no new row
        # version, no WAL); INSERT ... ON CONFLICT DO UPDATE would lock, so rewrite, each one.
        cur.execute(
            sql.SQL(
                "UPDATE {table} t SET {assign}, updated_at = now(), synced_at = now(), "
                "last_run_id = %s FROM {stage} s "
                "WHERE t.site = %s AND {match} AND t.deleted_at IS NULL AND {changed}"
            ).format(table=table, assign=assign, stage=STAGE, match=key_match, changed=changed),
            (run_id, site),
        )
        result.updated = cur.rowcount

    if to_insert:
        cur.execute(
            sql.SQL(
                "INSERT INTO {table} "
                "(site, {cols}, first_seen_at, updated_at, synced_at, last_run_id) "
                "SELECT %s, {s_cols}, now(), now(), now(), %s FROM {stage} s "
                "WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.site = %s AND {match})"
            ).format(
                table=table,
                cols=idents(spec.data_columns),
                s_cols=idents(spec.data_columns, "s"),
                stage=STAGE,
                match=key_match,
            ),
            (site, run_id, site),
        )
        result.inserted = cur.rowcount

    result.unchanged = distinct_rows - result.inserted - result.updated - result.restored
    result.live_rows = live_before - result.deleted + result.inserted + result.restored


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
