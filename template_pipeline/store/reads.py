"""Reading a site's live rows back (downstream assets, checks, the CLI), with or without pandas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa
from psycopg import sql

from template_pipeline.domain.batches import gc_paused
from template_pipeline.domain.changes import KnownRows, int_key, text_key
from template_pipeline.store import db
from template_pipeline.store.idents import idents
from template_pipeline.store.tables import table_spec

if TYPE_CHECKING:
    import pandas as pd


def read_live_rows(
    database_url: str,
    entity: str,
    site: str,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The site's live rows of ``entity`` (all history rows for append-only ``stats``).

    Returns an empty frame with the requested columns when the table does not exist yet.
    """
    # pandas costs about a second of CPU to import: only the callers that want a frame pay it.
    import pandas as pd

    names, rows = _select_live_rows(database_url, entity, site, columns)
    with gc_paused():
        return pd.DataFrame.from_records(rows, columns=names)


def _select_live_rows(
    database_url: str, entity: str, site: str, columns: Sequence[str] | None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    spec = table_spec(entity)
    table = spec.table
    names = list(columns) if columns else [c.name for c in table.columns]
    unknown = [name for name in names if name not in table.c]
    if unknown:
        raise ValueError(f"{spec.name} has no column(s) {', '.join(unknown)}")
    order = spec.keys if spec.mode == "merge" else ("fetched_at", "id")
    query = sql.SQL("SELECT {cols} FROM {table} WHERE site = %s{live} ORDER BY {order}").format(
        cols=idents(names),
        table=sql.Identifier(spec.name),
        live=sql.SQL(" AND deleted_at IS NULL" if spec.mode == "merge" else ""),
        order=idents(order),
    )
    with db.connect(database_url) as conn, gc_paused():
        exists = conn.execute("SELECT to_regclass(%s)", (spec.name,)).fetchone()
        if exists is None or exists[0] is None:
            return names, []
        return names, conn.execute(query, (site,)).fetchall()


def live_hashes(conn: psycopg.Connection, entity: str, site: str) -> KnownRows:
    """The content hash of each live row of the site (``domain.changes``), keyed by its key.

    Read before a sync, to let unchanged records off validation and copying; the caller holds
    the site's lock, so no other writer changes these rows until its sync is done.
    """
    spec = table_spec(entity)
    if not spec.hashed or len(spec.keys) != 1:
        raise ValueError(f"{spec.name} keeps no content hash per key")
    key_column = spec.table.c[spec.keys[0]]
    normalise = int_key if isinstance(key_column.type, sa.Integer) else text_key
    cur = conn.execute(
        sql.SQL(
            "SELECT {key}, content_hash FROM {table} WHERE site = %s AND deleted_at IS NULL"
        ).format(key=sql.Identifier(spec.keys[0]), table=sql.Identifier(spec.name)),
        (site,),
    )
    with gc_paused():
        if normalise is int_key:
            # bigint keys come back as int already: the dict is built at C speed.
            hashes = dict(cur.fetchall())
        else:
            hashes = {normalise(key): digest for key, digest in cur}
    return KnownRows(hashes=hashes, normalise=normalise)
