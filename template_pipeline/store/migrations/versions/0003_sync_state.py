"""``template_sync_state``: the latest outcome per site and entity, backfilled from the runs.

Revision ID: 0003
Revises: 0002
Create Date: 2025-06-02

``last_success_at`` is the Dashboard's ``sync_timestamp``: kept on one row per (site, entity),
upserted in the transaction of each sync, so that an unchanged re-sync moves it without
rewriting any entity row. The history already in ``template_sync_runs`` fills it.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

logger = logging.getLogger("template_pipeline.store.migrations")

_BACKFILL = """
INSERT INTO template_sync_state (site, entity, last_success_at, last_run_id, last_attempt_at,
                                 last_status, consecutive_failures, last_error)
SELECT pair.site, pair.entity, success.finished_at, success.run_id, latest.finished_at,
       latest.status,
       (SELECT count(*) FROM template_sync_runs AS f
         WHERE f.site = pair.site AND f.entity = pair.entity AND f.status <> 'success'
           AND (success.finished_at IS NULL OR f.finished_at > success.finished_at)),
       CASE WHEN latest.status <> 'success' THEN latest.error END
  FROM (SELECT DISTINCT site, entity FROM template_sync_runs) AS pair
 CROSS JOIN LATERAL (
        SELECT r.finished_at, r.status, r.error FROM template_sync_runs AS r
         WHERE r.site = pair.site AND r.entity = pair.entity
         ORDER BY r.finished_at DESC, r.id DESC LIMIT 1) AS latest
  LEFT JOIN LATERAL (
        SELECT r.finished_at, r.run_id FROM template_sync_runs AS r
         WHERE r.site = pair.site AND r.entity = pair.entity AND r.status = 'success'
         ORDER BY r.finished_at DESC, r.id DESC LIMIT 1) AS success ON true
"""


def upgrade() -> None:
    op.create_table(
        "template_sync_state",
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True)),
        sa.Column("last_run_id", sa.Text),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status", sa.Text, nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("site", "entity", name="template_sync_state_pkey"),
        sa.CheckConstraint(
            "last_status IN ('success', 'failed', 'refused')",
            name="template_sync_state_last_status_check",
        ),
    )
    if context.is_offline_mode():
        op.execute(_BACKFILL)
        return
    filled = op.get_bind().execute(sa.text(_BACKFILL)).rowcount
    logger.info("0003: template_sync_state: %d (site, entity) rows from template_sync_runs", filled)


def downgrade() -> None:
    op.drop_table("template_sync_state")
