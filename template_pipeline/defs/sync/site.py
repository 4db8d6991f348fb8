"""One site's sync: its own lock, connection and transactions; a failure stays its own.

The site's lock is held for the whole sync, so a batch and a single-site run (or two batches)
never write the same site at once. Each entity is written in a transaction of its own, in
lineage order; the site's checks are then evaluated with the numbers of those writes, and a
blocking check that failed keeps the entities derived from it (``order_items`` from ``orders``)
as they were. A refused key or an unreachable site fails every selected entity with the same
reason; a failure of one endpoint fails that entity only.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone

import psycopg

from template_pipeline.defs.checks import evaluate_rules
from template_pipeline.defs.checks.evaluations import evaluate_refusal
from template_pipeline.defs.checks.facts import MASS_DELETE_GUARD, CheckTarget
from template_pipeline.defs.resources import TemplateCheckSettings
from template_pipeline.defs.sync import fetching
from template_pipeline.defs.sync.outcomes import CheckOutcome, SiteReport, classify
from template_pipeline.domain import stop
from template_pipeline.domain.entities import BY_NAME, NAMES
from template_pipeline.domain.sites import Site
from template_pipeline.source import ClientSettings, TemplateClient, client_for
from template_pipeline.store import db
from template_pipeline.store.locks import site_lock
from template_pipeline.store.pool import pool_for
from template_pipeline.store.reads import live_hashes
from template_pipeline.store.results import MassDeleteRefusedError
from template_pipeline.store.schema_version import require_current
from template_pipeline.store.sync_state import record_failure
from template_pipeline.store.writer import (
    derive_order_items,
    order_items_current,
    record_unchanged,
    write_snapshot,
)


@dataclass(frozen=True)
class SyncSettings:
    """Everything one site's sync needs besides the site."""

    database_url: str
    run_id: str
    client: ClientSettings
    checks: TemplateCheckSettings
    entities: frozenset[str]  # the selected entities
    check_keys: frozenset[tuple[str, str]]  # the selected (entity, check)
    max_delete_fraction: float = 0.5
    min_rows_for_guard: int = 10
    full_max_records: int = 2000
    lock_wait_s: float = 600.0
    notes: list[str] = field(default_factory=list)


def sync_site(site: Site, settings: SyncSettings) -> SiteReport:
    """Sync one site; never raises for the site's own failures (they are in the report)."""
    started = time.perf_counter()
    report = SiteReport(site=site.key, started_at=datetime.now(timezone.utc))
    try:
        require_current(settings.database_url)
        with (
            pool_for(settings.database_url).connection() as conn,
            site_lock(conn, site.key, wait_s=settings.lock_wait_s),
        ):
            _sync_locked(site, settings, conn, report)
    except Exception as exc:  # the lock, the pool or the client: the whole site
        stop.check()  # a statement canceled because a stop was asked for is no failure
        _fail_rest(report, settings.entities, exc)
    report.duration_s = time.perf_counter() - started
    return report


def _sync_locked(
    site: Site, settings: SyncSettings, conn: psycopg.Connection, report: SiteReport
) -> None:
    records = [e for e in NAMES if e in settings.entities and BY_NAME[e].has_records]
    if "stats" in settings.entities or records:
        with client_for(site, settings.client) as client:
            _fetch_and_write(client, site, settings, conn, report)
    if "order_items" in settings.entities:
        _derive_order_items(site.key, settings, conn, report)
    _evaluate_checks(site.key, settings, report)
    _record_failures(site.key, settings, conn, report)


def _record_failures(
    site: str, settings: SyncSettings, conn: psycopg.Connection, report: SiteReport
) -> None:
    """Every failed entity's kind, and the failures the write path never saw, in the tables
    (the fleet view reads them): a refused key or an unreachable site fails before any write."""
    at = datetime.now(timezone.utc)
    began = report.started_at or at
    try:
        for entity, outcome in report.entities.items():
            if outcome.failure is not None:
                kind, error = outcome.failure.kind, outcome.failure.reason
            elif outcome.blocked_by_check and outcome.skipped:
                kind, error = "check", outcome.skipped
            else:
                continue
            record_failure(
                conn,
                site=site,
                entity=entity,
                run_id=settings.run_id,
                kind=kind,
                error=error,
                at=at,
                started_at=began,
            )
        conn.commit()
    except psycopg.Error:  # the failures themselves are in the report, the run and its alerts
        conn.rollback()


def _fetch_and_write(
    client: TemplateClient,
    site: Site,
    settings: SyncSettings,
    conn: psycopg.Connection,
    report: SiteReport,
) -> None:
    try:
        export = fetching.read_export(
            client, settings.entities, full_max_records=settings.full_max_records
        )
    except Exception as exc:
        _fail_rest(report, settings.entities - {"order_items"}, exc)
        return
    report.fetch_mode = "full" if export.full is not None else "endpoints"
    if "stats" in settings.entities:
        _write_stats(site, settings, conn, report, export)
    for entity in NAMES:
        spec = BY_NAME[entity]
        if entity not in settings.entities or not spec.has_records:
            continue
        stop.check()
        try:
            known = live_hashes(conn, entity, site.key)
            conn.commit()  # not left inside a transaction while the pages are fetched
            snapshot = fetching.entity_snapshot(
                site.key,
                entity,
                fetching.entity_pages(client, entity, export),
                base_url=client.base_url,
                known=known,
            )
            report.outcome(entity).result = write_snapshot(
                settings.database_url, snapshot, conn=conn, **_write_options(settings)
            )
        except Exception as exc:
            if _fail(report, entity, exc).site_wide:
                _fail_rest(report, settings.entities - {"order_items"}, exc)
                return


def _write_stats(
    site: Site,
    settings: SyncSettings,
    conn: psycopg.Connection,
    report: SiteReport,
    export: fetching.SiteExport,
) -> None:
    outcome = report.outcome("stats")
    if export.stats_row is None:
        outcome.failure = export.stats_failure
        return
    outcome.stats_row = export.stats_row
    try:
        outcome.result = write_snapshot(
            settings.database_url,
            fetching.stats_snapshot(site.key, export.stats_row, site.base_url),
            conn=conn,
            **_write_options(settings),
        )
    except Exception as exc:
        _fail(report, "stats", exc)


def _derive_order_items(
    site: str, settings: SyncSettings, conn: psycopg.Connection, report: SiteReport
) -> None:
    outcome = report.outcome("order_items")
    orders = report.entities.get("orders")
    if orders is not None and not orders.succeeded:
        outcome.skipped = "orders could not be synced: the order lines keep their last version"
        return
    blocked = _blocking_failure(site, "orders", settings, report)
    if blocked:
        outcome.skipped = f"{blocked}: the order lines keep their last version"
        outcome.blocked_by_check = True
        return
    options = _write_options(settings)
    try:
        unchanged = orders is not None and orders.result is not None and _no_change(orders.result)
        if unchanged and order_items_current(conn, site):
            outcome.result = record_unchanged(conn, site, "order_items", settings.run_id)
            return
        outcome.result = derive_order_items(settings.database_url, site, conn=conn, **options)
    except Exception as exc:
        _fail(report, "order_items", exc)


def _no_change(result) -> bool:
    return not (result.inserted or result.updated or result.deleted or result.restored)


def _blocking_failure(site: str, entity: str, settings: SyncSettings, report: SiteReport) -> str:
    """The failed blocking check of ``entity`` this sync found, in words ('' when none)."""
    if entity not in settings.entities:
        return ""
    for check in _evaluate_entity(site, entity, settings, report):
        if check.blocks:
            return f"the {check.check} check of {entity} failed"
    return ""


def _evaluate_checks(site: str, settings: SyncSettings, report: SiteReport) -> None:
    for entity in NAMES:
        _evaluate_entity(site, entity, settings, report)


def _evaluate_entity(
    site: str, entity: str, settings: SyncSettings, report: SiteReport
) -> list[CheckOutcome]:
    """The entity's check outcomes, evaluated once (a second call returns the first ones)."""
    done = [c for c in report.checks if c.entity == entity]
    if done or entity in report.evaluated:
        return done
    report.evaluated.add(entity)
    selected = {check for name, check in settings.check_keys if name == entity}
    outcome = report.entities.get(entity)
    if not selected:
        return []
    if outcome is not None and outcome.refusal is not None and MASS_DELETE_GUARD in selected:
        result = evaluate_refusal(outcome.refusal, settings.run_id)
        report.checks.append(CheckOutcome(entity, MASS_DELETE_GUARD, result, blocking=True))
    # A check run on its own (the entity not synced in this run) reads the stored facts; a
    # check of an entity whose sync failed has nothing new to judge.
    if outcome is None or outcome.succeeded:
        target = CheckTarget(
            site=site,
            entity=entity,
            run_id=settings.run_id,
            sync=outcome.result if outcome is not None else None,
            stats=_stats_of_run(report),
        )
        with db.get_engine(settings.database_url).connect() as sa_conn:
            for rule, result in evaluate_rules(sa_conn, target, settings.checks, selected):
                report.checks.append(CheckOutcome(entity, rule.name, result, rule.blocking))
    return [c for c in report.checks if c.entity == entity]


def _stats_of_run(report: SiteReport) -> dict | None:
    stats = report.entities.get("stats")
    return stats.stats_row if stats is not None and stats.succeeded else None


def _write_options(settings: SyncSettings) -> dict:
    return {
        "run_id": settings.run_id,
        "max_delete_fraction": settings.max_delete_fraction,
        "min_rows_for_guard": settings.min_rows_for_guard,
        "log": _QUIET,
    }


def _fail(report: SiteReport, entity: str, exc: BaseException):
    stop.check()  # interrupted, not failed: the error is the stop's (a canceled statement)
    outcome = report.outcome(entity)
    outcome.failure = classify(exc)
    if isinstance(exc, MassDeleteRefusedError):
        outcome.refusal = exc
    return outcome.failure


def _fail_rest(report: SiteReport, entities: Collection[str], exc: BaseException) -> None:
    """Fail every selected entity not already decided, with the same reason."""
    stop.check()
    failure = classify(exc)
    for entity in entities:
        outcome = report.outcome(entity)
        if outcome.result is None and outcome.failure is None and outcome.skipped is None:
            outcome.failure = failure


class _Quiet:
    """The write path's log, muted: its counts reach the run's log through the report."""

    def info(self, msg: str, *args: object) -> None:
        pass

    def warning(self, msg: str, *args: object) -> None:
        pass


_QUIET = _Quiet()
