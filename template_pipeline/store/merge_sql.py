"""The statements of the merge, one function each, over identifiers of the tables module only.

Every statement touches one site's rows and the session's staging table (``s``); the target is
``t``. Values are bound parameters. An update rewrites a row only when its content changed
(``IS DISTINCT FROM`` over the compared columns), or when only its stored content hash is stale
(after a release changed how records become rows): then ``updated_at`` stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import psycopg
from psycopg import sql

from template_pipeline.store.idents import idents
from template_pipeline.store.staging import ORD, STAGE
from template_pipeline.store.tables import TableSpec


@dataclass(frozen=True)
class Fragments:
    """The pieces of SQL every statement of one table's merge shares (identifiers only)."""

    table: sql.Identifier
    key_match: sql.Composable  # t.<key> = s.<key> AND ...
    changed: sql.Composable  # (t.<compared>) IS DISTINCT FROM (s.<compared>)
    refresh: sql.Composable  # changed, or a stale content hash
    # <compared> = s.<compared>, ... [, content_hash = s.content_hash] [, erased_at = NULL]
    assign: sql.Composable
    cols: sql.Composable  # the columns an insert writes from the stage
    s_cols: sql.Composable  # s.<those columns>
    t_key: sql.Identifier
    s_ord: sql.Identifier
    key: sql.Identifier  # the first key column, unqualified


@cache
def fragments(spec: TableSpec) -> Fragments:
    compared = spec.compared_columns
    changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
        idents(compared, "t"), idents(compared, "s")
    )
    assigned = [*compared, "content_hash"] if spec.hashed else list(compared)
    assign = [
        sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("s", c)) for c in assigned
    ]
    if "erased_at" in spec.table.c:
        # A row written again from the site holds its personal fields again.
        assign.append(sql.SQL("erased_at = NULL"))
    inserted = [*spec.data_columns, "content_hash"] if spec.hashed else list(spec.data_columns)
    refresh = changed
    if spec.hashed:
        # Rows staged without a hash (written without a ChangeFilter) never reset a stored one.
        refresh = sql.SQL(
            "({changed} OR (s.content_hash IS NOT NULL "
            "AND t.content_hash IS DISTINCT FROM s.content_hash))"
        ).format(changed=changed)
    return Fragments(
        table=sql.Identifier(spec.name),
        key_match=sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier("t", k), sql.Identifier("s", k))
            for k in spec.keys
        ),
        changed=changed,
        refresh=refresh,
        assign=sql.SQL(", ").join(assign),
        cols=idents(inserted),
        s_cols=idents(inserted, "s"),
        t_key=sql.Identifier("t", spec.keys[0]),
        s_ord=sql.Identifier("s", ORD),
        key=sql.Identifier(spec.keys[0]),
    )


def classify_full(cur: psycopg.Cursor, f: Fragments, spec: TableSpec, site: str) -> tuple[int, ...]:
    """(live before, to delete, to restore, to update, to insert), in one pass over both sides."""
    cur.execute(
        sql.SQL(
            "SELECT "
            "count(*) FILTER (WHERE {t_key} IS NOT NULL AND t.deleted_at IS NULL), "
            "count(*) FILTER (WHERE {s_ord} IS NULL AND t.deleted_at IS NULL), "
            "count(*) FILTER (WHERE {s_ord} IS NOT NULL AND t.deleted_at IS NOT NULL), "
            "count(*) FILTER (WHERE {s_ord} IS NOT NULL AND {t_key} IS NOT NULL "
            "AND t.deleted_at IS NULL AND {refresh}), "
            "count(*) FILTER (WHERE {t_key} IS NULL) "
            "FROM {stage} s FULL JOIN "
            "(SELECT {cols}, deleted_at FROM {table} WHERE site = %s) t ON {match}"
        ).format(
            t_key=f.t_key,
            s_ord=f.s_ord,
            refresh=f.refresh,
            stage=STAGE,
            cols=idents((*spec.data_columns, *(("content_hash",) if spec.hashed else ()))),
            table=f.table,
            match=f.key_match,
        ),
        (site,),
    )
    row = cur.fetchone()
    assert row is not None  # an aggregate always returns one row
    return tuple(int(n) for n in row)


def classify_staged(cur: psycopg.Cursor, f: Fragments, site: str) -> tuple[int, int, int]:
    """(to restore, to update, to insert) over the staged rows only (the site's other rows are
    known from their hashes)."""
    cur.execute(
        sql.SQL(
            "SELECT "
            "count(*) FILTER (WHERE {t_key} IS NOT NULL AND t.deleted_at IS NOT NULL), "
            "count(*) FILTER (WHERE {t_key} IS NOT NULL AND t.deleted_at IS NULL AND {refresh}), "
            "count(*) FILTER (WHERE {t_key} IS NULL) "
            "FROM {stage} s LEFT JOIN {table} t ON t.site = %s AND {match}"
        ).format(t_key=f.t_key, refresh=f.refresh, stage=STAGE, table=f.table, match=f.key_match),
        (site,),
    )
    row = cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def soft_delete_missing(cur: psycopg.Cursor, f: Fragments, site: str, run_id: str) -> int:
    """Soft-delete the live rows the stage does not hold."""
    cur.execute(
        sql.SQL(
            "UPDATE {table} t SET deleted_at = now(), synced_at = now(), last_run_id = %s "
            "WHERE t.site = %s AND t.deleted_at IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE {match})"
        ).format(table=f.table, stage=STAGE, match=f.key_match),
        (run_id, site),
    )
    return cur.rowcount


def soft_delete_keys(
    cur: psycopg.Cursor, f: Fragments, site: str, run_id: str, keys: Sequence[Any]
) -> int:
    """Soft-delete the live rows of ``keys``."""
    cur.execute(
        sql.SQL(
            "UPDATE {table} SET deleted_at = now(), synced_at = now(), last_run_id = %s "
            "WHERE site = %s AND deleted_at IS NULL AND {key} = ANY(%s)"
        ).format(table=f.table, key=f.key),
        (run_id, site, list(keys)),
    )
    return cur.rowcount


def restore(cur: psycopg.Cursor, f: Fragments, site: str, run_id: str) -> int:
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


def update(cur: psycopg.Cursor, f: Fragments, site: str, run_id: str) -> int:
    # The IS DISTINCT FROM filter is what keeps unchanged rows unwritten (no new row version,
    # no WAL); INSERT ... ON CONFLICT DO UPDATE would lock, so rewrite, each one.
    cur.execute(
        sql.SQL(
            "UPDATE {table} t SET {assign}, "
            "updated_at = CASE WHEN {changed} THEN now() ELSE t.updated_at END, "
            "synced_at = now(), last_run_id = %s FROM {stage} s "
            "WHERE t.site = %s AND {match} AND t.deleted_at IS NULL AND {refresh}"
        ).format(
            table=f.table,
            assign=f.assign,
            changed=f.changed,
            stage=STAGE,
            match=f.key_match,
            refresh=f.refresh,
        ),
        (run_id, site),
    )
    return cur.rowcount


def insert(cur: psycopg.Cursor, f: Fragments, site: str, run_id: str) -> int:
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
