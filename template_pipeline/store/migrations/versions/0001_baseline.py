"""Baseline: the schema of release 0.1.0, as its ``create_all`` made it.

Revision ID: 0001
Revises:
Create Date: 2025-06-02

A database created by release 0.1.0 (tables, no version row) is stamped at this revision by
``template-pipeline migrate`` instead of running it. Ids are text here; 0002 makes them bigint.
Frozen: written out in full, never derived from the live table definitions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = sa.Numeric(12, 2)
TIMESTAMPTZ = sa.DateTime(timezone=True)
_MERGED_STORAGE = {"fillfactor": 85}


def _bookkeeping() -> list[sa.Column]:
    return [
        sa.Column("first_seen_at", TIMESTAMPTZ, nullable=False),
        sa.Column("updated_at", TIMESTAMPTZ, nullable=False),
        sa.Column("synced_at", TIMESTAMPTZ, nullable=False),
        sa.Column("deleted_at", TIMESTAMPTZ, nullable=True),
        sa.Column("last_run_id", sa.Text, nullable=True),
    ]


def _merged(name: str, keys: tuple[str, ...], *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column("site", sa.Text, nullable=False),
        *columns,
        *_bookkeeping(),
        sa.PrimaryKeyConstraint("site", *keys, name=f"{name}_pkey"),
        postgresql_with=_MERGED_STORAGE,
    )


def _identity_id() -> sa.Column:
    return sa.Column("id", sa.BigInteger, sa.Identity(always=False), nullable=False)


def _check_in(table: str, column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=f"{table}_{column}_check")


def _t(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.Text, nullable=nullable)


def _paintings_users_orders() -> None:
    _merged(
        "template_paintings",
        ("template_id",),
        _t("template_id", False),
        _t("name"),
        sa.Column("price", MONEY),
        _t("category"),
        _t("technique"),
        sa.Column("year", sa.Integer),
        sa.Column("quantity", sa.Integer),
        _t("status"),
        _t("image"),
        _t("image_url"),
        sa.Column("display_order", sa.Integer),
        _t("site_name"),
        sa.Column("extra", JSONB),
    )
    _merged(
        "template_users",
        ("template_id",),
        _t("template_id", False),
        _t("name"),
        _t("email"),
        sa.Column("create_date", TIMESTAMPTZ),
        _t("role"),
        _t("site_name"),
        sa.Column("extra", JSONB),
    )
    _merged(
        "template_orders",
        ("template_id",),
        _t("template_id", False),
        _t("customer_name"),
        _t("email"),
        sa.Column("total_price", MONEY),
        sa.Column("order_date", TIMESTAMPTZ),
        _t("status"),
        sa.Column("items", JSONB),
        sa.Column("item_count", sa.Integer),
        _t("site_name"),
        sa.Column("extra", JSONB),
    )


def _other_entities() -> None:
    _merged(
        "template_order_items",
        ("order_id", "line_no"),
        _t("order_id", False),
        sa.Column("line_no", sa.Integer, nullable=False),
        _t("painting_id"),
        _t("name"),
        _t("image"),
        sa.Column("price", MONEY),
        sa.Column("quantity", sa.Integer),
        sa.Column("extra", JSONB),
    )
    _merged(
        "template_settings",
        ("key",),
        _t("key", False),
        _t("value"),
        sa.Column("is_masked", sa.Boolean),
    )
    _merged(
        "template_exhibitions",
        ("template_id",),
        _t("template_id", False),
        _t("title"),
        _t("description"),
        sa.Column("start_date", sa.Date),
        sa.Column("end_date", sa.Date),
        _t("location"),
        sa.Column("extra", JSONB),
    )
    _merged(
        "template_custom_requests",
        ("template_id",),
        _t("template_id", False),
        _t("name"),
        _t("email"),
        _t("message"),
        sa.Column("budget", MONEY),
        _t("status"),
        sa.Column("created_at", TIMESTAMPTZ),
        sa.Column("extra", JSONB),
    )


def _history() -> None:
    op.create_table(
        "template_stats",
        _identity_id(),
        _t("site", False),
        _t("run_id"),
        sa.Column("fetched_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        *(sa.Column(name, sa.Integer) for name in _COUNTERS),
        sa.Column("revenue", sa.Numeric(14, 2)),
        sa.Column("payload", JSONB),
        sa.PrimaryKeyConstraint("id", name="template_stats_pkey"),
    )
    op.create_index("ix_template_stats_site_fetched_at", "template_stats", ["site", "fetched_at"])
    op.create_table(
        "template_rejects",
        _identity_id(),
        _t("site", False),
        _t("entity", False),
        _t("template_id"),
        _t("reason", False),
        sa.Column("payload", JSONB),
        _t("run_id"),
        sa.Column("rejected_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="template_rejects_pkey"),
    )
    op.create_index(
        "ix_template_rejects_site_entity_rejected_at",
        "template_rejects",
        ["site", "entity", "rejected_at"],
    )
    op.create_table(
        "template_sync_runs",
        _identity_id(),
        _t("site", False),
        _t("entity", False),
        _t("run_id"),
        _t("status", False),
        *(sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in _COUNTS),
        sa.Column("new_fields", JSONB),
        _t("error"),
        sa.Column("started_at", TIMESTAMPTZ, nullable=False),
        sa.Column("finished_at", TIMESTAMPTZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="template_sync_runs_pkey"),
        _check_in("template_sync_runs", "status", ("success", "failed", "refused")),
    )
    op.create_index(
        "ix_template_sync_runs_site_entity_finished_at",
        "template_sync_runs",
        ["site", "entity", "finished_at"],
    )


_COUNTERS = ("paintings", "users", "orders", "exhibitions", "custom_requests")
_COUNTS = (
    "fetched",
    "valid",
    "rejected",
    "duplicates",
    "inserted",
    "updated",
    "unchanged",
    "deleted",
    "restored",
)


def _alerts() -> None:
    op.create_table(
        "template_alerts",
        _identity_id(),
        _t("dedupe_key", False),
        _t("source", False),
        _t("site"),
        _t("asset"),
        _t("check_name"),
        _t("severity", False),
        _t("message", False),
        _t("run_id"),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("resolved_at", TIMESTAMPTZ),
        _t("webhook_status"),
        sa.PrimaryKeyConstraint("id", name="template_alerts_pkey"),
        sa.UniqueConstraint("dedupe_key", name="template_alerts_dedupe_key_key"),
        _check_in("template_alerts", "source", ("check", "run", "health")),
        _check_in("template_alerts", "severity", ("INFO", "WARN", "ERROR")),
    )
    op.create_index("ix_template_alerts_site_created_at", "template_alerts", ["site", "created_at"])
    op.create_index(
        "ix_template_alerts_open",
        "template_alerts",
        ["source", "asset", "check_name", "site"],
        postgresql_where=sa.text("resolved_at IS NULL"),
    )


def _webhooks_and_health() -> None:
    op.create_table(
        "template_webhook_events",
        _identity_id(),
        _t("site", False),
        _t("event", False),
        sa.Column("payload", JSONB, nullable=False),
        _t("delivery_id"),
        sa.Column("received_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("consumed_at", TIMESTAMPTZ),
        _t("run_key"),
        sa.PrimaryKeyConstraint("id", name="template_webhook_events_pkey"),
    )
    op.create_index(
        "ix_template_webhook_events_pending",
        "template_webhook_events",
        ["id"],
        postgresql_where=sa.text("consumed_at IS NULL"),
    )
    op.create_table(
        "template_site_health",
        _identity_id(),
        _t("site", False),
        sa.Column("checked_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        _t("status", False),
        _t("probe", False),
        sa.Column("latency_ms", sa.Float),
        _t("detail"),
        sa.Column("changed", sa.Boolean, nullable=False, server_default=sa.false()),
        _t("run_id"),
        sa.PrimaryKeyConstraint("id", name="template_site_health_pkey"),
        _check_in("template_site_health", "status", ("up", "down")),
    )
    op.create_index(
        "ix_template_site_health_site_checked_at", "template_site_health", ["site", "checked_at"]
    )


def upgrade() -> None:
    _paintings_users_orders()
    _other_entities()
    _history()
    _alerts()
    _webhooks_and_health()


def downgrade() -> None:
    # Dropping every table of the Dashboard is not a migration: do it by hand if it is meant.
    raise NotImplementedError("the baseline is not undone; drop the template_* tables by hand")
