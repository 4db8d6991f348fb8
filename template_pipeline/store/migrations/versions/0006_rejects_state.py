"""``template_rejects`` becomes state: one row per distinct bad record, resolved when it goes away.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Until now every sync appended every invalid record again (8,109 rows a night for the large
benchmark site), each with its whole payload. From this revision on a reject is one row per
(site, entity, content hash: the id as sent and the payload), with ``first_seen_at``,
``last_seen_at``, ``times_seen``, ``last_run_id`` and ``resolved_at`` (``store.rejects``).

The rows already there are collapsed: each group of identical records becomes one row with
``times_seen`` the number of rows, ``first_seen_at`` / ``last_seen_at`` the oldest and newest
``rejected_at``, and the newest row's reason and run. A group is still open when its newest row
came from the latest successful sync of its site and entity (``template_sync_state``); a group
that a later successful sync did not see is resolved at that sync's time; one with no successful
sync after it stays open. The table is rebuilt (columns, unique key and index as
``store/tables.py`` defines them) rather than altered: almost every row goes.

The downgrade writes one row per reject back in the old shape (the newest sighting of each).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

logger = logging.getLogger("template_pipeline.store.migrations")

TIMESTAMPTZ = sa.DateTime(timezone=True)

# The identity of a reject: the same expression as store.rejects.REJECT_HASH_SQL (a test syncs a
# migrated reject again and finds it counted, not duplicated).
_HASH = (
    "('x' || left(md5(coalesce(template_id, '') || chr(10) || coalesce(payload::text, 'null')), "
    "16))::bit(64)::bigint"
)

_COLLAPSE = f"""
CREATE TEMP TABLE template_rejects_0006 AS
SELECT g.site, g.entity, g.template_id, g.content_hash, g.reason, g.payload, g.first_seen_at,
       g.last_seen_at, g.times_seen, g.last_run_id,
       CASE WHEN s.last_success_at IS NOT NULL
             AND g.last_run_id IS DISTINCT FROM s.last_run_id
             AND s.last_success_at > g.last_seen_at
            THEN s.last_success_at END AS resolved_at
  FROM (SELECT r.site, r.entity, r.h AS content_hash,
               (array_agg(r.template_id ORDER BY r.rejected_at DESC, r.id DESC))[1] AS template_id,
               (array_agg(r.reason ORDER BY r.rejected_at DESC, r.id DESC))[1] AS reason,
               (array_agg(r.payload ORDER BY r.rejected_at DESC, r.id DESC))[1] AS payload,
               min(r.rejected_at) AS first_seen_at, max(r.rejected_at) AS last_seen_at,
               count(*)::integer AS times_seen,
               (array_agg(r.run_id ORDER BY r.rejected_at DESC, r.id DESC))[1] AS last_run_id
          FROM (SELECT *, {_HASH} AS h FROM template_rejects) AS r
         GROUP BY r.site, r.entity, r.h) AS g
  LEFT JOIN template_sync_state AS s ON s.site = g.site AND s.entity = g.entity
"""

_COLUMNS = (
    "site, entity, template_id, content_hash, reason, payload, first_seen_at, last_seen_at, "
    "times_seen, last_run_id, resolved_at"
)
_REFILL = f"""
INSERT INTO template_rejects ({_COLUMNS})
SELECT {_COLUMNS} FROM template_rejects_0006 ORDER BY first_seen_at, site, entity, content_hash
"""

_SHRINK = """
INSERT INTO template_rejects (site, entity, template_id, reason, payload, run_id, rejected_at)
SELECT site, entity, template_id, reason, payload, last_run_id, last_seen_at
  FROM template_rejects_0006 ORDER BY id
"""


def _text(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.Text, nullable=nullable)


def _identity_id() -> sa.Column:
    return sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False)


def _create_state_table() -> None:
    op.create_table(
        "template_rejects",
        _identity_id(),
        _text("site", False),
        _text("entity", False),
        _text("template_id"),
        sa.Column("content_hash", sa.BigInteger, nullable=False),
        _text("reason", False),
        sa.Column("payload", JSONB),
        sa.Column("first_seen_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("last_seen_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("times_seen", sa.Integer, nullable=False, server_default="1"),
        _text("last_run_id"),
        sa.Column("resolved_at", TIMESTAMPTZ),
        sa.PrimaryKeyConstraint("id", name="template_rejects_pkey"),
        sa.UniqueConstraint(
            "site", "entity", "content_hash", name="template_rejects_site_entity_content_hash_key"
        ),
    )
    op.create_index(
        "ix_template_rejects_open",
        "template_rejects",
        ["site", "entity"],
        postgresql_where=sa.text("resolved_at IS NULL"),
    )


def upgrade() -> None:
    online = not context.is_offline_mode()
    before = (
        op.get_bind().execute(sa.text("SELECT count(*) FROM template_rejects")).scalar()
        if online
        else None
    )
    op.execute(_COLLAPSE)
    op.drop_table("template_rejects")
    _create_state_table()
    op.execute(_REFILL)
    if online:
        after, resolved = (
            op.get_bind()
            .execute(
                sa.text(
                    "SELECT count(*), count(*) FILTER (WHERE resolved_at IS NOT NULL) "
                    "FROM template_rejects"
                )
            )
            .one()
        )
        logger.info(
            "0006: template_rejects: %d row(s) collapsed into %d distinct reject(s), %d of them "
            "resolved",
            before,
            after,
            resolved,
        )
    op.execute("DROP TABLE template_rejects_0006")


def downgrade() -> None:
    op.execute("CREATE TEMP TABLE template_rejects_0006 AS SELECT * FROM template_rejects")
    op.drop_table("template_rejects")
    op.create_table(
        "template_rejects",
        _identity_id(),
        _text("site", False),
        _text("entity", False),
        _text("template_id"),
        _text("reason", False),
        sa.Column("payload", JSONB),
        _text("run_id"),
        sa.Column("rejected_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="template_rejects_pkey"),
    )
    op.create_index(
        "ix_template_rejects_site_entity_rejected_at",
        "template_rejects",
        ["site", "entity", "rejected_at"],
    )
    op.execute(_SHRINK)
    op.execute("DROP TABLE template_rejects_0006")
