"""Personal data erased, and why syncs fail: ``erased_at`` and the error kinds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

``erased_at`` on the tables whose rows are about a person (users, orders, custom requests):
when their personal fields (the registry's ``personal_fields``) were erased, 30 days after the
site deleted the record or by ``template-pipeline forget``; the rest of the row stays for
history. ``error_kind`` on ``template_sync_runs`` and ``last_error_kind`` on
``template_sync_state``: the kind of a failed attempt (auth, unreachable, bad data, check, ...),
which the fleet view (``fleet_status``, ``template-pipeline status``) shows per site. Nullable
columns without defaults: catalog changes only, nothing is rewritten. The ``dashboard_*`` views
name their columns and are not affected.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PERSONAL_TABLES = ("template_users", "template_orders", "template_custom_requests")


def upgrade() -> None:
    for table in PERSONAL_TABLES:
        op.add_column(table, sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("template_sync_runs", sa.Column("error_kind", sa.Text, nullable=True))
    op.add_column("template_sync_state", sa.Column("last_error_kind", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("template_sync_state", "last_error_kind")
    op.drop_column("template_sync_runs", "error_kind")
    for table in PERSONAL_TABLES:
        op.drop_column(table, "erased_at")
