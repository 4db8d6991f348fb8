"""Freshness: was each site's data synced within the window? Per site, and for every site at once.

In a sync run freshness passes by definition, so the hourly health job evaluates it for every
site partition (:func:`freshness_evaluations`).
"""

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
import sqlalchemy as sa

from template_pipeline.defs.checks.facts import FRESHNESS, CheckTarget, check_result
from template_pipeline.defs.resources import TemplateCheckSettings
from template_pipeline.domain.entities import NAMES
from template_pipeline.store.tables import template_sync_runs


def _freshness_result(
    target: CheckTarget,
    last_success: datetime | None,
    window: timedelta,
    now: datetime,
) -> tuple[bool, str, dict[str, Any]]:
    metadata: dict[str, Any] = {"window_hours": round(window.total_seconds() / 3600, 2)}
    if last_success is None:
        return False, f"{target} was never synced successfully", metadata
    age = now - last_success
    metadata.update(
        last_success_at=last_success.isoformat(),
        age_hours=round(age.total_seconds() / 3600, 2),
    )
    if age <= window:
        return True, f"{target} was synced {metadata['age_hours']} h ago", metadata
    return (
        False,
        f"{target} was last synced {metadata['age_hours']} h ago, more than the "
        f"{metadata['window_hours']} h allowed",
        metadata,
    )


def evaluate_freshness(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    last = last_successes(conn, [target.site]).get((target.site, target.entity))
    passed, description, metadata = _freshness_result(
        target, last, settings.freshness_window(), datetime.now(timezone.utc)
    )
    return check_result(passed, description, metadata)


def last_successes(conn: sa.Connection, sites: Sequence[str]) -> dict[tuple[str, str], datetime]:
    runs = template_sync_runs
    rows = conn.execute(
        sa.select(runs.c.site, runs.c.entity, sa.func.max(runs.c.finished_at))
        .where(runs.c.status == "success", runs.c.site.in_(list(sites)))
        .group_by(runs.c.site, runs.c.entity)
    ).all()
    return {(site, entity): finished for site, entity, finished in rows}


def freshness_evaluations(
    conn: sa.Connection,
    sites: Sequence[str],
    window: timedelta,
    now: datetime | None = None,
) -> Iterator[dg.AssetCheckEvaluation]:
    """One ``freshness`` evaluation per site and asset, for an op to yield."""
    now = now or datetime.now(timezone.utc)
    last = last_successes(conn, sites) if sites else {}
    for site in sites:
        for entity in NAMES:
            target = CheckTarget(site=site, entity=entity)
            passed, description, metadata = _freshness_result(
                target, last.get((site, entity)), window, now
            )
            yield dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(entity),
                check_name=FRESHNESS,
                passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=description,
                metadata=metadata,
                blocking=False,
                partition=site,
            )
