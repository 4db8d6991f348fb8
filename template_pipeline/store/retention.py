"""Retention: the bookkeeping rows that have served their purpose go, in bounded batches.

Four kinds of rows of the Dashboard database are purged once older than their limit (days,
:class:`RetentionPolicy`, each overridable by an environment variable of ``domain.config``):

==================  ==========================  ===============================================
kind                table                       what goes
==================  ==========================  ===============================================
``rejects``         ``template_rejects``        resolved rejects, ``resolved_at`` older than
                                                the limit (open rejects are current state)
``health``          ``template_site_health``    probes older than the limit, except each
                                                site's latest one (its current state)
``webhook_events``  ``template_webhook_events`` consumed events, ``consumed_at`` older than
                                                the limit (pending events wait for the sensor)
``alerts``          ``template_alerts``         alerts created before the limit, except open
                                                check and health alerts (they keep a failing
                                                check or a down site from alerting again)
==================  ==========================  ===============================================

Entity tables, ``template_stats``, ``template_sync_runs`` and ``template_sync_state`` are never
touched. Each batch is one short transaction deleting at most ``batch_size`` rows by primary
key, so a purge never holds a long lock and can be interrupted at any point. A dry run counts
what would go and changes nothing. Dagster's own runs are purged by ``defs.retention`` (the
instance API), with the fifth limit of the policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone

from psycopg import sql

from template_pipeline.domain import config
from template_pipeline.store import db
from template_pipeline.store.ops_tables import (
    template_alerts,
    template_site_health,
    template_webhook_events,
)
from template_pipeline.store.tables import template_rejects, template_sync_state

DEFAULT_BATCH_SIZE = 5000


@dataclass(frozen=True)
class RetentionPolicy:
    """How many days each kind of row is kept (whole days, at least 1)."""

    rejects_days: int = int(config.RETENTION_REJECTS_DAYS.default or 30)
    health_days: int = int(config.RETENTION_HEALTH_DAYS.default or 14)
    webhook_events_days: int = int(config.RETENTION_WEBHOOK_EVENTS_DAYS.default or 7)
    alerts_days: int = int(config.RETENTION_ALERTS_DAYS.default or 90)
    dagster_runs_days: int = int(config.RETENTION_DAGSTER_RUNS_DAYS.default or 30)

    def __post_init__(self) -> None:
        for field in fields(self):
            days = getattr(self, field.name)
            if isinstance(days, bool) or not isinstance(days, int) or days < 1:
                raise ValueError(
                    f"retention {field.name} must be a whole number >= 1, not {days!r}"
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetentionPolicy:
        """The policy of the ``TEMPLATE_RETENTION_*_DAYS`` variables (their defaults if unset)."""
        return cls(**{name: _days(variable, environ) for name, variable in _VARIABLES.items()})


_VARIABLES = {
    "rejects_days": config.RETENTION_REJECTS_DAYS,
    "health_days": config.RETENTION_HEALTH_DAYS,
    "webhook_events_days": config.RETENTION_WEBHOOK_EVENTS_DAYS,
    "alerts_days": config.RETENTION_ALERTS_DAYS,
    "dagster_runs_days": config.RETENTION_DAGSTER_RUNS_DAYS,
}


def _days(variable: config.Variable, environ: Mapping[str, str] | None) -> int:
    raw = variable.get(environ) or ""
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{variable.name} must be a whole number of days >= 1, got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class _Kind:
    name: str
    table: str
    days_field: str
    # Rows of ``t`` that may go; ``%(cutoff)s`` is the limit.
    where: str


KINDS: tuple[_Kind, ...] = (
    _Kind(
        "rejects",
        template_rejects.name,
        "rejects_days",
        "t.resolved_at IS NOT NULL AND t.resolved_at < %(cutoff)s",
    ),
    _Kind(
        "health",
        template_site_health.name,
        "health_days",
        "t.checked_at < %(cutoff)s AND EXISTS (SELECT 1 FROM {table} AS n "
        "WHERE n.site = t.site AND n.checked_at > t.checked_at)",
    ),
    _Kind(
        "webhook_events",
        template_webhook_events.name,
        "webhook_events_days",
        "t.consumed_at IS NOT NULL AND t.consumed_at < %(cutoff)s",
    ),
    _Kind(
        "alerts",
        template_alerts.name,
        "alerts_days",
        "t.created_at < %(cutoff)s AND (t.resolved_at IS NOT NULL OR t.source = 'run')",
    ),
)
KIND_NAMES: tuple[str, ...] = (*(k.name for k in KINDS), "dagster_runs")


@dataclass(frozen=True)
class Purged:
    """What a purge removed of one kind (or, in a dry run, would remove)."""

    kind: str
    table: str
    days: int
    cutoff: datetime
    rows: int


def cutoff(days: int, now: datetime | None = None) -> datetime:
    """The instant ``days`` before ``now`` (UTC): rows older than it go."""
    return (now or datetime.now(timezone.utc)) - timedelta(days=days)


def _statements(kind: _Kind) -> tuple[sql.Composed, sql.Composed]:
    table = sql.Identifier(kind.table)
    where = sql.SQL(kind.where).format(table=table)
    count = sql.SQL("SELECT count(*) FROM {table} AS t WHERE {where}").format(
        table=table, where=where
    )
    delete = sql.SQL(
        "DELETE FROM {table} WHERE id IN "
        "(SELECT t.id FROM {table} AS t WHERE {where} ORDER BY t.id LIMIT %(limit)s)"
    ).format(table=table, where=where)
    return count, delete


def purge_tables(
    database_url: str,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[Purged]:
    """Purge (or count, with ``dry_run``) every kind of :data:`KINDS`, in their order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    done: list[Purged] = []
    with db.connect(database_url) as conn:
        for kind in KINDS:
            days = getattr(policy, kind.days_field)
            params = {"cutoff": cutoff(days, now), "limit": batch_size}
            count, delete = _statements(kind)
            removed = 0
            if dry_run:
                row = conn.execute(count, params).fetchone()
                removed = int(row[0]) if row else 0
                conn.rollback()
            else:
                while True:
                    batch = conn.execute(delete, params).rowcount
                    conn.commit()
                    removed += batch
                    if batch < batch_size:
                        break
            done.append(Purged(kind.name, kind.table, days, params["cutoff"], removed))
    return done


def latest_success_run_ids(database_url: str) -> set[str]:
    """The runs of every (site, entity)'s latest successful sync: their Dagster runs are kept."""
    statement = sql.SQL(
        "SELECT DISTINCT last_run_id FROM {state} WHERE last_run_id IS NOT NULL"
    ).format(state=sql.Identifier(template_sync_state.name))
    with db.connect(database_url) as conn:
        return {row[0] for row in conn.execute(statement).fetchall()}
