"""The operations tables: alerts, webhook events and site health (SQLAlchemy Core).

They are defined on :data:`template_pipeline.store.base.metadata`, the one schema definition, and
created by the same migrations as the Dashboard's tables. They are the pipeline's own
bookkeeping, which the Dashboard may read:

* ``template_alerts``: one row per alert sent (failed check, failed run, site down or back up).
  ``dedupe_key`` is unique: a sensor that evaluates the same event twice inserts nothing the
  second time, and sends nothing either. ``resolved_at`` is set when the check passes again or
  the site comes back, which is what keeps a check that keeps failing from alerting every run.
* ``template_webhook_events``: signed events accepted by ``template-pipeline webhook``, pending
  until the webhook sensor turns them into runs (``consumed_at``, ``run_key``).
* ``template_site_health``: one row per probe of a site by the hourly health job; the latest row
  of a site is its current state, ``changed`` marks the probes where it went down or came back.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from template_pipeline.domain.vocabulary import ALERT_SEVERITIES, ALERT_SOURCES, HEALTH_STATUSES
from template_pipeline.store.base import TIMESTAMPTZ, check_in, metadata

template_alerts = sa.Table(
    "template_alerts",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    # What the alert is about, unique: "check:<run id>:<event storage id>:<event time>",
    # "run:<run id>", "health:<site>:<probe id>". Inserting with ON CONFLICT DO NOTHING makes
    # sending idempotent.
    sa.Column("dedupe_key", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("site", sa.Text),
    sa.Column("asset", sa.Text),
    sa.Column("check_name", sa.Text),
    sa.Column("severity", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("resolved_at", TIMESTAMPTZ),
    # Outcome of the HTTP sink: "sent", "failed" or "disabled" (no ALERT_WEBHOOK_URL).
    sa.Column("webhook_status", sa.Text),
    sa.UniqueConstraint("dedupe_key", name="template_alerts_dedupe_key_key"),
    check_in("template_alerts", "source", ALERT_SOURCES),
    check_in("template_alerts", "severity", ALERT_SEVERITIES),
    sa.Index("ix_template_alerts_site_created_at", "site", "created_at"),
    # The open alerts of a check on a site: looked up for every evaluation the sensor reads.
    sa.Index(
        "ix_template_alerts_open",
        "source",
        "asset",
        "check_name",
        "site",
        postgresql_where=sa.text("resolved_at IS NULL"),
    ),
)

template_webhook_events = sa.Table(
    "template_webhook_events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    # The verified request body (small: the intake refuses large bodies).
    sa.Column("payload", JSONB, nullable=False),
    # The sender's delivery id (X-Template-Delivery), when it sends one.
    sa.Column("delivery_id", sa.Text),
    sa.Column("received_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("consumed_at", TIMESTAMPTZ),
    # The run requested for the event; NULL on a consumed event means no run was needed.
    sa.Column("run_key", sa.Text),
    sa.Index(
        "ix_template_webhook_events_pending",
        "id",
        postgresql_where=sa.text("consumed_at IS NULL"),
    ),
)

template_site_health = sa.Table(
    "template_site_health",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("checked_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
    sa.Column("status", sa.Text, nullable=False),
    # The probe's finding: "ok", "unreachable", "auth refused", "not found", "bad response".
    sa.Column("probe", sa.Text, nullable=False),
    sa.Column("latency_ms", sa.Float),
    sa.Column("detail", sa.Text),
    sa.Column("changed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("run_id", sa.Text),
    check_in("template_site_health", "status", HEALTH_STATUSES),
    sa.Index("ix_template_site_health_site_checked_at", "site", "checked_at"),
)
