"""The evaluations of one site's data: rejects, duplicate keys, the site's own counts, the guard."""

from datetime import datetime, timezone
from typing import Any

import dagster as dg
import sqlalchemy as sa

from template_pipeline.defs.checks.facts import (
    QUOTED_VALUE_RE,
    CheckTarget,
    check_result,
    latest_sync,
    md_table,
    no_sync,
    pct,
    target_live_count,
)
from template_pipeline.defs.resources import TemplateCheckSettings
from template_pipeline.domain.vocabulary import MASKED
from template_pipeline.store.tables import (
    ENTITY_TABLES,
    template_rejects,
    template_settings,
    template_stats,
)


def evaluate_reject_rate(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    row = latest_sync(conn, target, success_only=True)
    if row is None:
        return no_sync(target)
    threshold = settings.reject_rate_threshold()
    min_rejects = settings.min_rejects()
    rate = row.rejected / row.fetched if row.fetched else 0.0
    rejects = template_rejects
    # The current rejects: open, and seen by the sync this check evaluates (one row per
    # distinct bad record, however many syncs saw it).
    reasons = conn.execute(
        sa.select(rejects.c.reason, sa.func.count().label("n"))
        .where(
            rejects.c.site == target.site,
            rejects.c.entity == target.entity,
            rejects.c.resolved_at.is_(None),
            rejects.c.last_run_id == row.run_id,
        )
        .group_by(rejects.c.reason)
        .order_by(sa.desc("n"), rejects.c.reason)
        .limit(settings.max_listed)
    ).all()
    metadata: dict[str, Any] = {
        "fetched": row.fetched,
        "valid": row.valid,
        "rejected": row.rejected,
        "reject_rate_pct": round(rate * 100, 2),
        "threshold_pct": round(threshold * 100, 2),
        "min_rejects_for_error": min_rejects,
        "sync_run_id": row.run_id or "",
    }
    if reasons:
        metadata["top_reasons"] = md_table(
            ("records", "reason"),
            ((n, QUOTED_VALUE_RE.sub("", reason).replace("|", "\\|")) for reason, n in reasons),
        )
    if row.rejected == 0:
        return check_result(True, f"no record of {target} was rejected", metadata)
    summary = f"{row.rejected} of {row.fetched} records of {target} rejected ({rate:.1%})"
    where = "the rejects are in template_rejects with their reasons"
    if rate > threshold and row.rejected >= min_rejects:
        return check_result(
            False,
            f"{summary}, above the {threshold:.1%} threshold: assets downstream are not updated "
            f"in this run; {where}",
            metadata,
        )
    # A single bad record in a small site is quarantined and reported, not an emergency: the
    # ERROR is for payloads that are broken as a whole (a format change, a bad deploy).
    why = (
        f"within the {threshold:.1%} threshold"
        if rate <= threshold
        else f"above the {threshold:.1%} threshold but fewer than {min_rejects} records"
    )
    return check_result(False, f"{summary}, {why}; {where}", metadata, dg.AssetCheckSeverity.WARN)


def evaluate_unique_ids(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    row = latest_sync(conn, target, success_only=True)
    if row is None:
        return no_sync(target)
    keys = ", ".join(ENTITY_TABLES[target.entity].keys)
    metadata = {
        "valid": row.valid,
        "duplicates": row.duplicates,
        "distinct": row.valid - row.duplicates,
        "key": keys,
        "resolution": "last occurrence in page order wins",
        "sync_run_id": row.run_id or "",
    }
    if row.duplicates == 0:
        return check_result(True, f"every {keys} of {target} is unique in the payload", metadata)
    return check_result(
        False,
        f"{row.duplicates} duplicate {keys} value(s) in the payload of {target}; the last "
        "occurrence of each was kept",
        metadata,
        dg.AssetCheckSeverity.WARN,
    )


def _latest_stats(conn: sa.Connection, target: CheckTarget) -> tuple[Any, datetime] | None:
    """(the site's count of the entity, when it was read) from its latest stats."""
    if target.stats is not None:
        return target.stats.get(target.entity), target.stats.get("fetched_at") or _now()
    stats = template_stats
    return conn.execute(
        sa.select(stats.c[target.entity], stats.c.fetched_at)
        .where(stats.c.site == target.site)
        .order_by(stats.c.fetched_at.desc(), stats.c.id.desc())
        .limit(1)
    ).first()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def evaluate_matches_site_stats(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    latest = _latest_stats(conn, target)
    row = latest_sync(conn, target, success_only=True)
    if row is None:
        return no_sync(target)
    if latest is None:
        return check_result(
            False,
            f"no stats of site {target.site!r} fetched yet: nothing to compare {target} with",
            {"site": target.site},
            dg.AssetCheckSeverity.WARN,
        )
    reported, fetched_at = latest
    live = target_live_count(conn, target)
    metadata: dict[str, Any] = {
        "site_reports": reported if reported is not None else "not reported",
        "live_rows": live,
        "rejected": row.rejected,
        "stats_fetched_at": fetched_at.isoformat(),
    }
    if reported is None:
        return check_result(
            True, f"site {target.site!r} reports no {target.entity} count", metadata
        )
    # Quarantined records exist upstream too: the site may count them or not.
    difference = int(reported) - live - row.rejected
    accounted = reported in (live, live + row.rejected)
    metadata["unaccounted"] = 0 if accounted else difference
    if accounted:
        return check_result(True, f"{target}: {live} live rows match the site's count", metadata)
    return check_result(
        False,
        f"site {target.site!r} reports {reported} {target.entity}, the Dashboard holds {live} "
        f"live rows and {row.rejected} rejected ({difference:+d} unaccounted for)",
        metadata,
        dg.AssetCheckSeverity.WARN,
    )


def evaluate_mass_delete_guard(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    row = latest_sync(conn, target, success_only=False)
    if row is None:
        return no_sync(target)
    metadata: dict[str, Any] = {
        "status": row.status,
        "deleted": row.deleted,
        "sync_run_id": row.run_id or "",
    }
    if row.status == "refused":
        metadata["would_delete"] = metadata.pop("deleted")
        return check_result(
            False,
            f"the latest sync of {target} was refused by the mass-delete guard: "
            f"{row.error or 'no detail recorded'}",
            metadata,
        )
    live = target_live_count(conn, target)
    if row.status == "success":
        # Live rows before the sync, from what the sync did to them.
        before = live + row.deleted - row.inserted - row.restored
        metadata.update(
            live_rows=live, live_rows_before=before, deleted_pct=pct(row.deleted, before)
        )
        if before == 0:
            return check_result(
                True, f"the latest sync of {target} found no row to protect", metadata
            )
        return check_result(
            True,
            f"the latest sync of {target} soft-deleted {row.deleted} of {before} live rows",
            metadata,
        )
    metadata["live_rows"] = live
    return check_result(
        True, f"the latest sync of {target} failed before deleting anything", metadata
    )


def evaluate_site_name_present(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    rows = template_settings
    live = sa.and_(rows.c.site == target.site, rows.c.deleted_at.is_(None))
    n_settings, n_masked = conn.execute(
        sa.select(sa.func.count(), sa.func.count().filter(rows.c.is_masked.is_(True))).where(live)
    ).one()
    value = conn.execute(
        sa.select(rows.c.value).where(live, rows.c.key == "site_name")
    ).scalar_one_or_none()
    metadata: dict[str, Any] = {"settings": int(n_settings), "masked_settings": int(n_masked)}
    if value is not None and value.strip() and value.strip() != MASKED:
        metadata["site_name"] = value.strip()
        return check_result(True, f"site {target.site!r} is named {value.strip()!r}", metadata)
    return check_result(
        False,
        f"the settings of site {target.site!r} have no usable site_name: the Dashboard shows "
        "sites by this name",
        metadata,
    )


def evaluate_refusal(exc: Any, run_id: str) -> dg.AssetCheckResult:
    """The failed ``mass_delete_guard`` of a write the guard refused (a MassDeleteRefusedError).

    The refused write rolled back, so nothing of it is in the tables: the check reads the
    refusal itself, in the same step.
    """
    live_rows, to_delete = int(exc.live_rows), int(exc.to_delete)
    return check_result(
        False,
        str(exc),
        {
            "status": "refused",
            "live_rows": live_rows,
            "would_delete": to_delete,
            "would_delete_pct": pct(to_delete, live_rows),
            "max_delete_fraction": float(exc.max_delete_fraction),
            "min_rows_for_guard": int(exc.min_rows_for_guard),
            "sync_run_id": run_id,
        },
    )
