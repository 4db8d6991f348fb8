"""``template_rejects`` as state: one row per distinct bad record, resolved when it goes away.

A snapshot's rejects are streamed with ``COPY`` into a temporary table (:func:`copy_rejects`,
dropped at commit or rollback) while the snapshot is staged; once the writer holds the site's
lock, :func:`record_rejects` folds them into ``template_rejects`` in two set-based statements,
in the sync's transaction:

1. an ``INSERT ... ON CONFLICT DO UPDATE`` keyed by ``(site, entity, content_hash)``: a record
   seen for the first time gets a row (``times_seen`` 1); one already there has its
   ``last_seen_at``, ``last_run_id`` and ``reason`` refreshed, ``times_seen`` incremented and
   ``resolved_at`` cleared (it came back);
2. an ``UPDATE`` that resolves every open reject of the site and entity that this sync did not
   see: the site now serves a valid version of the record, or no longer serves it.

A record's identity is its content hash: 64 bits of the MD5 of the id as the site sent it and
of the payload's canonical JSON (``jsonb`` text), so a record without an id is identified by its
payload alone, and a record the site changes but still gets wrong is a new row (the old version
is resolved). The same record twice in one payload counts once. A failed or refused sync rolls
all of this back: rejects change only with a successful sync. The per-run counts stay in
``template_sync_runs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from template_pipeline.domain.batches import Reject
from template_pipeline.store.idents import idents, json_text
from template_pipeline.store.tables import template_rejects

REJECT_STAGE = sql.Identifier("template_reject_stage")
_REJECTS = sql.Identifier(template_rejects.name)
_STAGE_COLUMNS = ("template_id", "reason", "payload")

# The identity of a reject (a signed bigint), from its text id and jsonb payload. Revision 0006
# computes the same expression over the rows it converts: keep them equal.
REJECT_HASH_SQL = (
    "('x' || left(md5(coalesce(template_id, '') || chr(10) || coalesce(payload::text, 'null')), "
    "16))::bit(64)::bigint"
)

_UPSERT = sql.SQL(
    "INSERT INTO {rejects} AS r (site, entity, template_id, content_hash, reason, payload, "
    "first_seen_at, last_seen_at, times_seen, last_run_id) "
    "SELECT DISTINCT ON (h) %(site)s, %(entity)s, template_id, h, reason, payload, "
    "%(at)s, %(at)s, 1, %(run_id)s "
    "FROM (SELECT template_id, reason, payload, " + REJECT_HASH_SQL + " AS h FROM {stage}) s "
    "ORDER BY h, reason "
    "ON CONFLICT (site, entity, content_hash) DO UPDATE SET "
    "reason = EXCLUDED.reason, last_seen_at = EXCLUDED.last_seen_at, "
    "times_seen = r.times_seen + 1, last_run_id = EXCLUDED.last_run_id, resolved_at = NULL"
).format(rejects=_REJECTS, stage=REJECT_STAGE)

_RESOLVE = sql.SQL(
    "UPDATE {rejects} SET resolved_at = %(at)s "
    "WHERE site = %(site)s AND entity = %(entity)s AND resolved_at IS NULL "
    "AND last_seen_at <> %(at)s"
).format(rejects=_REJECTS)


_RESOLVE_ALL = sql.SQL(
    "UPDATE {rejects} SET resolved_at = statement_timestamp() "
    "WHERE site = %(site)s AND entity = %(entity)s AND resolved_at IS NULL"
).format(rejects=_REJECTS)


@dataclass(frozen=True)
class RejectChanges:
    """What one sync did to the site's rejects of one entity."""

    seen: int  # distinct bad records in this sync (new or seen before)
    resolved: int  # open rejects this sync no longer saw


def create_reject_stage(cur: psycopg.Cursor) -> None:
    """The session's temporary table of this sync's rejects (dropped at commit or rollback)."""
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {cols} FROM {rejects} WITH NO DATA"
        ).format(stage=REJECT_STAGE, cols=idents(_STAGE_COLUMNS), rejects=_REJECTS)
    )


def copy_rejects(cur: psycopg.Cursor, rejects: Sequence[Reject]) -> None:
    """Append ``rejects`` to the stage created by :func:`create_reject_stage`."""
    statement = sql.SQL("COPY {stage} ({cols}) FROM STDIN").format(
        stage=REJECT_STAGE, cols=idents(_STAGE_COLUMNS)
    )
    with cur.copy(statement) as copy:
        for reject in rejects:
            template_id = None if reject.template_id is None else str(reject.template_id)
            copy.write_row((template_id, reject.reason, json_text(reject.payload)))


def record_rejects(
    cur: psycopg.Cursor, site: str, entity: str, run_id: str, *, staged: bool
) -> RejectChanges:
    """Fold this sync's staged rejects into ``template_rejects`` and resolve the others.

    Call it once per successful sync of ``(site, entity)``, holding the site's lock (so the
    writers of one site take turns and ``clock_timestamp()`` orders them); ``staged`` says
    whether :func:`create_reject_stage` ran (a sync without rejects has no stage).
    """
    params: dict[str, object] = {"site": site, "entity": entity, "run_id": run_id}
    if not staged:
        # Nothing seen: every open reject goes, in one statement.
        cur.execute(_RESOLVE_ALL, params)
        return RejectChanges(seen=0, resolved=cur.rowcount)
    row = cur.execute("SELECT clock_timestamp()").fetchone()
    params["at"] = row[0] if row else None
    cur.execute(_UPSERT, params)
    seen = cur.rowcount
    cur.execute(_RESOLVE, params)
    return RejectChanges(seen=seen, resolved=cur.rowcount)
