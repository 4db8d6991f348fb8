"""``content_hash`` on every table built from raw records: unchanged records skip the work.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Each row keeps the 64-bit hash of the raw record it was built from (``domain.changes``): a
re-sync compares the hashes of the records it receives with the stored ones and neither
validates nor copies a record whose hash is unchanged. The column is nullable and starts empty:
rows written before this revision have no hash, so their first sync after the upgrade goes
through validation as before and stores one; nothing is rewritten by the upgrade itself
(adding a nullable column without a default is a catalog change in PostgreSQL, instant on a
large table). ``template_order_items`` has no raw record of its own and no hash.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HASHED_TABLES = (
    "template_paintings",
    "template_users",
    "template_orders",
    "template_settings",
    "template_exhibitions",
    "template_custom_requests",
)


def upgrade() -> None:
    for table in HASHED_TABLES:
        op.add_column(table, sa.Column("content_hash", sa.BigInteger, nullable=True))


def downgrade() -> None:
    for table in HASHED_TABLES:
        op.drop_column(table, "content_hash")
