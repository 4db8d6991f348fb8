"""Asset checks of the template assets, evaluated per site partition.

Every check is a :class:`CheckRule` (a name, what it guards, which entities it applies to, how to
evaluate it), and the entities come from the same spec table as the assets
(``ENDPOINT_SPECS`` / ``ALL_ENTITIES`` and ``ENTITY_TABLES``), so a new endpoint gets its checks
without a line here. :data:`template_checks` holds one ``AssetChecksDefinition`` per entity
(one op, ``<entity>_checks``, evaluating every rule of the entity on one connection), with one
``AssetCheckSpec`` per rule, partitioned like the assets.

Checks read their facts from the Dashboard's database: the assets return lazy snapshots that
the IO manager streams into PostgreSQL, so nothing of the payload is in memory once the asset
step is done. What the IO manager saw (fetched, rejected, duplicate, deleted records) is in the
``template_sync_runs`` row it writes in the same transaction as the data; the check reads the row
of its own run, or the latest one when it is run on its own.

============================  ==========================  ========  ===========================
check                         entities                    blocking  fails with
============================  ==========================  ========  ===========================
``reject_rate``               settings + list endpoints   yes       WARN on any reject, ERROR
                                                                    above 5 % (and 3 records)
``unique_ids``                settings + list endpoints   no        WARN (duplicates resolved:
                                                                    the last occurrence wins)
``matches_site_stats``        counted list endpoints      no        WARN
``order_totals``              orders                      no        WARN, first mismatches
``items_reference_paintings`` order_items                 no        WARN, with counts
``mass_delete_guard``         merged tables               yes       ERROR (see below)
``freshness``                 every asset                 no        ERROR after 26 h
``site_name_present``         settings                    no        ERROR
============================  ==========================  ========  ===========================

A blocking check that fails with ERROR stops the assets downstream in the same run: a reject
rate above the threshold on ``orders`` keeps ``order_items`` from being rebuilt from bad orders.

The mass-delete guard lives in the IO manager, which refuses the write and raises
:class:`~template_pipeline.defs.io_manager.MassDeleteRefusedError`. The asset step then fails, and a
check downstream of a failed step never runs, so the refusal cannot be found by a check op. The
IO manager therefore reports it itself through :func:`report_refused_sync`, which logs a failed
blocking evaluation of ``mass_delete_guard`` from inside the failing step (the entity's check
op evaluates the successful writes, from the ``template_sync_runs`` row). The freshness checks
are also evaluated every hour, for every site, by the health job
(:func:`freshness_evaluations`): in a sync run they pass by definition.
"""

# No ``from __future__ import annotations``: Dagster reads the check functions' annotations
# (context and resource types) at definition time.
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.dialects.postgresql import JSONB

from template_pipeline.defs.assets import ALL_ENTITIES, ENDPOINT_SPECS
from template_pipeline.domain.sites import MASKED, sites_partitions
from template_pipeline.store import db
from template_pipeline.store.ops_tables import ensure_schema
from template_pipeline.store.tables import (
    ENTITY_TABLES,
    template_order_items,
    template_orders,
    template_paintings,
    template_rejects,
    template_settings,
    template_stats,
    template_sync_runs,
)

logger = logging.getLogger(__name__)

MAX_REJECT_RATE_ENV = "TEMPLATE_MAX_REJECT_RATE"
MIN_REJECTS_ENV = "TEMPLATE_MIN_REJECTS_FOR_ERROR"
FRESHNESS_HOURS_ENV = "TEMPLATE_FRESHNESS_HOURS"
DEFAULT_MAX_REJECT_RATE = 0.05
DEFAULT_MIN_REJECTS = 3
DEFAULT_FRESHNESS_HOURS = 26.0

MASS_DELETE_GUARD = "mass_delete_guard"
FRESHNESS = "freshness"

# "(got 'x@y')" parts of reject reasons quote record values; metadata shows the reasons only.
_QUOTED_VALUE_RE = re.compile(r"\s*\(got [^)]*\)")


# --------------------------------------------------------------------------------------------
# Resources


class DashboardDatabase(dg.ConfigurableResource):
    """The Dashboard's PostgreSQL, as read by checks, sensors, alerts and the health job."""

    database_url: str = Field(
        description="SQLAlchemy URL of the Dashboard's PostgreSQL (DASHBOARD_DATABASE_URL)."
    )

    def engine(self) -> sa.Engine:
        """The pooled engine of the database, its schema created on first use in a process."""
        ensure_schema(self.database_url)
        return db.get_engine(self.database_url)


class TemplateCheckSettings(dg.ConfigurableResource):
    """Thresholds of the checks; unset fields come from the environment, then the defaults."""

    max_reject_rate: float | None = Field(
        default=None,
        description=(
            f"Reject rate (0-1) above which reject_rate fails with ERROR and blocks; default "
            f"{MAX_REJECT_RATE_ENV} or {DEFAULT_MAX_REJECT_RATE}."
        ),
    )
    freshness_hours: float | None = Field(
        default=None,
        description=(
            f"Hours after which a site's data is stale; default {FRESHNESS_HOURS_ENV} or "
            f"{DEFAULT_FRESHNESS_HOURS:g}."
        ),
    )
    min_rejects_for_error: int | None = Field(
        default=None,
        description=(
            "reject_rate fails with ERROR only from this many rejected records on, so one bad "
            f"record in a small site is a warning; default {MIN_REJECTS_ENV} or "
            f"{DEFAULT_MIN_REJECTS}."
        ),
    )
    max_listed: int = Field(default=10, description="How many offending ids a check lists.")

    def reject_rate_threshold(self) -> float:
        value = _setting(
            self.max_reject_rate, MAX_REJECT_RATE_ENV, DEFAULT_MAX_REJECT_RATE, "max_reject_rate"
        )
        if not 0 <= value <= 1:
            raise ValueError(
                f"max_reject_rate ({MAX_REJECT_RATE_ENV}) is a share between 0 and 1 "
                f"(0.05 = 5 %), got {value:g}"
            )
        return value

    def min_rejects(self) -> int:
        value = _setting(
            self.min_rejects_for_error,
            MIN_REJECTS_ENV,
            DEFAULT_MIN_REJECTS,
            "min_rejects_for_error",
        )
        if value < 1 or value != int(value):
            raise ValueError(
                f"min_rejects_for_error ({MIN_REJECTS_ENV}) must be a whole number >= 1, "
                f"got {value:g}"
            )
        return int(value)

    def freshness_window(self) -> timedelta:
        hours = _setting(
            self.freshness_hours, FRESHNESS_HOURS_ENV, DEFAULT_FRESHNESS_HOURS, "freshness_hours"
        )
        if hours <= 0:
            raise ValueError(
                f"freshness_hours ({FRESHNESS_HOURS_ENV}) must be positive, got {hours:g}"
            )
        return timedelta(hours=hours)


def _setting(value: float | None, env_name: str, default: float, field_name: str) -> float:
    if value is not None:
        return float(value)
    raw = os.environ.get(env_name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{env_name} ({field_name}) must be a number, got {raw!r}") from None


# --------------------------------------------------------------------------------------------
# What a check evaluates


@dataclass(frozen=True)
class CheckTarget:
    """One evaluation: a site partition of an entity, in a run."""

    site: str
    entity: str
    run_id: str | None = None

    def __str__(self) -> str:
        return f"{self.entity} of site {self.site!r}"


Evaluate = Callable[[sa.Connection, CheckTarget, TemplateCheckSettings], dg.AssetCheckResult]


@dataclass(frozen=True)
class CheckRule:
    """One check, applied to each of ``entities``; ``deps`` names assets it must run after."""

    name: str
    description: str
    entities: tuple[str, ...]
    evaluate: Evaluate
    blocking: bool = False
    deps: Callable[[str], tuple[str, ...]] = lambda entity: ()


def _result(
    passed: bool,
    description: str,
    metadata: Mapping[str, Any],
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=passed, severity=severity, description=description, metadata=dict(metadata)
    )


def _no_sync(target: CheckTarget) -> dg.AssetCheckResult:
    # Nothing to judge yet (the check was launched before the first sync): a soft failure, so
    # the check does not turn green on no data, and nothing downstream is blocked for it.
    return _result(
        False,
        f"no successful sync of {target} is recorded yet",
        {"site": target.site},
        dg.AssetCheckSeverity.WARN,
    )


def _latest_sync(conn: sa.Connection, target: CheckTarget, *, success_only: bool) -> sa.Row | None:
    """The ``template_sync_runs`` row of the target's own run if any, else its latest row."""
    runs = template_sync_runs
    query = sa.select(runs).where(runs.c.site == target.site, runs.c.entity == target.entity)
    if success_only:
        query = query.where(runs.c.status == "success")
    own_run_first = sa.case((runs.c.run_id == (target.run_id or ""), 0), else_=1)
    query = query.order_by(own_run_first, runs.c.finished_at.desc(), runs.c.id.desc()).limit(1)
    return conn.execute(query).first()


def _live_count(conn: sa.Connection, entity: str, site: str) -> int:
    table = ENTITY_TABLES[entity].table
    query = sa.select(sa.func.count()).select_from(table).where(table.c.site == site)
    if "deleted_at" in table.c:
        query = query.where(table.c.deleted_at.is_(None))
    return int(conn.execute(query).scalar_one())


def _pct(part: int | float, whole: int | float) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)
    return dg.MetadataValue.md("\n".join(lines))


# --------------------------------------------------------------------------------------------
# The evaluations


def evaluate_reject_rate(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    row = _latest_sync(conn, target, success_only=True)
    if row is None:
        return _no_sync(target)
    threshold = settings.reject_rate_threshold()
    min_rejects = settings.min_rejects()
    rate = row.rejected / row.fetched if row.fetched else 0.0
    rejects = template_rejects
    reasons = conn.execute(
        sa.select(rejects.c.reason, sa.func.count().label("n"))
        .where(
            rejects.c.site == target.site,
            rejects.c.entity == target.entity,
            rejects.c.run_id == row.run_id,
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
        metadata["top_reasons"] = _md_table(
            ("records", "reason"),
            ((n, _QUOTED_VALUE_RE.sub("", reason).replace("|", "\\|")) for reason, n in reasons),
        )
    if row.rejected == 0:
        return _result(True, f"no record of {target} was rejected", metadata)
    summary = f"{row.rejected} of {row.fetched} records of {target} rejected ({rate:.1%})"
    where = "the rejects are in template_rejects with their reasons"
    if rate > threshold and row.rejected >= min_rejects:
        return _result(
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
    return _result(False, f"{summary}, {why}; {where}", metadata, dg.AssetCheckSeverity.WARN)


def evaluate_unique_ids(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    row = _latest_sync(conn, target, success_only=True)
    if row is None:
        return _no_sync(target)
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
        return _result(True, f"every {keys} of {target} is unique in the payload", metadata)
    return _result(
        False,
        f"{row.duplicates} duplicate {keys} value(s) in the payload of {target}; the last "
        "occurrence of each was kept",
        metadata,
        dg.AssetCheckSeverity.WARN,
    )


def evaluate_matches_site_stats(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    stats = template_stats
    counter = stats.c[target.entity]
    latest = conn.execute(
        sa.select(counter, stats.c.fetched_at)
        .where(stats.c.site == target.site)
        .order_by(stats.c.fetched_at.desc(), stats.c.id.desc())
        .limit(1)
    ).first()
    row = _latest_sync(conn, target, success_only=True)
    if row is None:
        return _no_sync(target)
    if latest is None:
        return _result(
            False,
            f"no stats of site {target.site!r} fetched yet: nothing to compare {target} with",
            {"site": target.site},
            dg.AssetCheckSeverity.WARN,
        )
    reported, fetched_at = latest
    live = _live_count(conn, target.entity, target.site)
    metadata: dict[str, Any] = {
        "site_reports": reported if reported is not None else "not reported",
        "live_rows": live,
        "rejected": row.rejected,
        "stats_fetched_at": fetched_at.isoformat(),
    }
    if reported is None:
        return _result(True, f"site {target.site!r} reports no {target.entity} count", metadata)
    # Quarantined records exist upstream too: the site may count them or not.
    difference = int(reported) - live - row.rejected
    accounted = reported in (live, live + row.rejected)
    metadata["unaccounted"] = 0 if accounted else difference
    if accounted:
        return _result(True, f"{target}: {live} live rows match the site's count", metadata)
    return _result(
        False,
        f"site {target.site!r} reports {reported} {target.entity}, the Dashboard holds {live} "
        f"live rows and {row.rejected} rejected ({difference:+d} unaccounted for)",
        metadata,
        dg.AssetCheckSeverity.WARN,
    )


def evaluate_order_totals(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    orders = template_orders
    items = (
        sa.func.jsonb_array_elements(
            sa.case(
                (sa.func.jsonb_typeof(orders.c["items"]) == "array", orders.c["items"]),
                else_=sa.cast("[]", JSONB),
            )
        )
        .table_valued(sa.column("value", JSONB))
        .lateral("item")
    )
    line_total = sa.cast(items.c.value["price"].astext, sa.Numeric) * sa.func.coalesce(
        sa.cast(items.c.value["quantity"].astext, sa.Numeric), 1
    )
    per_order = (
        sa.select(
            orders.c.template_id,
            orders.c.total_price,
            sa.func.count(items.c.value).label("lines"),
            sa.func.round(sa.func.coalesce(sa.func.sum(line_total), 0), 2).label("items_total"),
        )
        .select_from(orders.outerjoin(items, sa.true()))
        .where(orders.c.site == target.site, orders.c.deleted_at.is_(None))
        .group_by(orders.c.template_id, orders.c.total_price)
        .subquery()
    )
    mismatch = sa.and_(per_order.c.lines > 0, per_order.c.items_total != per_order.c.total_price)
    counts = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(per_order.c.lines == 0),
            sa.func.count().filter(mismatch),
        ).select_from(per_order)
    ).one()
    n_orders, without_items, n_mismatches = (int(v) for v in counts)
    metadata: dict[str, Any] = {
        "orders": n_orders,
        "orders_checked": n_orders - without_items,
        "orders_without_items": without_items,
        "mismatches": n_mismatches,
    }
    if n_mismatches == 0:
        return _result(True, f"every order total of site {target.site!r} adds up", metadata)
    first = conn.execute(
        sa.select(per_order.c.template_id, per_order.c.total_price, per_order.c.items_total)
        .where(mismatch)
        .order_by(sa.func.length(per_order.c.template_id), per_order.c.template_id)
        .limit(settings.max_listed)
    ).all()
    metadata["first_mismatches"] = _md_table(
        ("order", "total_price", "sum of items", "difference"),
        (
            (oid, total, items_total, Decimal(total) - Decimal(items_total))
            for oid, total, items_total in first
        ),
    )
    shown = ", ".join(str(oid) for oid, _, _ in first)
    return _result(
        False,
        f"{n_mismatches} order(s) of site {target.site!r} have a total_price that differs from "
        f"the sum of their items (first: {shown})",
        metadata,
        dg.AssetCheckSeverity.WARN,
    )


def evaluate_items_reference_paintings(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    items, paintings = template_order_items, template_paintings
    elsewhere = sa.alias(paintings, "elsewhere")
    in_other_site = (
        sa.select(sa.literal(1))
        .where(elsewhere.c.template_id == items.c.painting_id, elsewhere.c.site != items.c.site)
        .exists()
    )
    unknown = sa.and_(items.c.painting_id.is_not(None), paintings.c.template_id.is_(None))
    joined = items.outerjoin(
        paintings,
        sa.and_(paintings.c.site == items.c.site, paintings.c.template_id == items.c.painting_id),
    )
    live_items = sa.and_(items.c.site == target.site, items.c.deleted_at.is_(None))
    counts = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(items.c.painting_id.is_(None)),
            sa.func.count().filter(unknown),
            sa.func.count().filter(sa.and_(unknown, in_other_site)),
            sa.func.count().filter(paintings.c.deleted_at.is_not(None)),
        )
        .select_from(joined)
        .where(live_items)
    ).one()
    n_items, without_ref, n_unknown, n_other_site, n_deleted = (int(v) for v in counts)
    metadata: dict[str, Any] = {
        "items": n_items,
        "referenced": n_items - without_ref - n_unknown,
        "unknown_painting": n_unknown,
        "painting_of_another_site": n_other_site,
        "painting_deleted_upstream": n_deleted,
        "without_painting_id": without_ref,
    }
    if n_unknown == 0:
        return _result(
            True,
            f"every order item of site {target.site!r} references a known painting",
            metadata,
        )
    first = (
        conn.execute(
            sa.select(items.c.painting_id)
            .select_from(joined)
            .where(live_items, unknown)
            .group_by(items.c.painting_id)
            .order_by(sa.func.length(items.c.painting_id), items.c.painting_id)
            .limit(settings.max_listed)
        )
        .scalars()
        .all()
    )
    metadata["first_unknown_paintings"] = dg.MetadataValue.json(list(first))
    return _result(
        False,
        f"{n_unknown} order item(s) of site {target.site!r} reference paintings the site does "
        f"not serve ({n_other_site} of them exist on another site); first: {', '.join(first)}",
        metadata,
        dg.AssetCheckSeverity.WARN,
    )


def evaluate_mass_delete_guard(
    conn: sa.Connection, target: CheckTarget, settings: TemplateCheckSettings
) -> dg.AssetCheckResult:
    row = _latest_sync(conn, target, success_only=False)
    if row is None:
        return _no_sync(target)
    metadata: dict[str, Any] = {
        "status": row.status,
        "deleted": row.deleted,
        "sync_run_id": row.run_id or "",
    }
    if row.status == "refused":
        metadata["would_delete"] = metadata.pop("deleted")
        return _result(
            False,
            f"the latest sync of {target} was refused by the mass-delete guard: "
            f"{row.error or 'no detail recorded'}",
            metadata,
        )
    live = _live_count(conn, target.entity, target.site)
    if row.status == "success":
        # Live rows before the sync, from what the sync did to them.
        before = live + row.deleted - row.inserted - row.restored
        metadata.update(
            live_rows=live, live_rows_before=before, deleted_pct=_pct(row.deleted, before)
        )
        if before == 0:
            return _result(True, f"the latest sync of {target} found no row to protect", metadata)
        return _result(
            True,
            f"the latest sync of {target} soft-deleted {row.deleted} of {before} live rows",
            metadata,
        )
    metadata["live_rows"] = live
    return _result(True, f"the latest sync of {target} failed before deleting anything", metadata)


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
    last = _last_successes(conn, [target.site]).get((target.site, target.entity))
    passed, description, metadata = _freshness_result(
        target, last, settings.freshness_window(), datetime.now(timezone.utc)
    )
    return _result(passed, description, metadata)


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
        return _result(True, f"site {target.site!r} is named {value.strip()!r}", metadata)
    return _result(
        False,
        f"the settings of site {target.site!r} have no usable site_name: the Dashboard shows "
        "sites by this name",
        metadata,
    )


# --------------------------------------------------------------------------------------------
# The rules, from the spec table

# Endpoints serving records (rejects and duplicate ids are possible): settings and the lists.
RECORD_ENTITIES = tuple(s.entity for s in ENDPOINT_SPECS if s.kind in ("list", "settings"))
# List endpoints the site's own stats count.
COUNTED_ENTITIES = tuple(
    s.entity for s in ENDPOINT_SPECS if s.kind == "list" and s.entity in template_stats.c
)
# Entities merged into a current-state table, where the IO manager's mass-delete guard applies.
MERGED_ENTITIES = tuple(e for e in ALL_ENTITIES if ENTITY_TABLES[e].mode == "merge")

CHECK_RULES: tuple[CheckRule, ...] = (
    CheckRule(
        "reject_rate",
        "Share of records that failed validation: WARN when any was rejected, ERROR (blocking) "
        "above the threshold.",
        RECORD_ENTITIES,
        evaluate_reject_rate,
        blocking=True,
    ),
    CheckRule(
        "unique_ids",
        "The payload holds each key once (duplicates are resolved: the last occurrence wins).",
        RECORD_ENTITIES,
        evaluate_unique_ids,
    ),
    CheckRule(
        "matches_site_stats",
        "Live rows reconcile with the count the site reports in its own stats.",
        COUNTED_ENTITIES,
        evaluate_matches_site_stats,
        # After this run's stats, when the run syncs them too.
        deps=lambda entity: ("stats",),
    ),
    CheckRule(
        "order_totals",
        "Each order's total_price equals the sum of its items (price x quantity).",
        ("orders",),
        evaluate_order_totals,
    ),
    CheckRule(
        "items_reference_paintings",
        "Order items reference paintings of the same site.",
        ("order_items",),
        evaluate_items_reference_paintings,
        deps=lambda entity: ("paintings",),
    ),
    CheckRule(
        MASS_DELETE_GUARD,
        "The IO manager's mass-delete guard did not refuse the latest sync (a refusal fails "
        "this check from inside the refused step).",
        MERGED_ENTITIES,
        evaluate_mass_delete_guard,
        blocking=True,
    ),
    CheckRule(
        FRESHNESS,
        "The site's data was synced within the freshness window (default 26 h); also evaluated "
        "hourly by the health job.",
        ALL_ENTITIES,
        evaluate_freshness,
    ),
    CheckRule(
        "site_name_present",
        "The settings hold a site_name (the name the Dashboard shows).",
        ("settings",),
        evaluate_site_name_present,
    ),
)
RULES_BY_NAME = {rule.name: rule for rule in CHECK_RULES}


def rules_for(entity: str) -> list[CheckRule]:
    return [rule for rule in CHECK_RULES if entity in rule.entities]


def build_entity_checks(entity: str) -> dg.AssetChecksDefinition:
    """The checks of one entity, partitioned by site, evaluated together in one op.

    One op per entity rather than per check: a site run then has 8 check steps instead of 35,
    which matters because each step costs Dagster bookkeeping the checks themselves do not (a
    few indexed queries on one connection). Each check is still its own ``AssetCheckSpec``:
    the UI, blocking and alerting see them one by one.
    """
    rules = rules_for(entity)
    specs = [
        dg.AssetCheckSpec(
            rule.name,
            asset=dg.AssetKey(entity),
            description=rule.description,
            blocking=rule.blocking,
            additional_deps=[dg.AssetKey(dep) for dep in rule.deps(entity)],
            partitions_def=sites_partitions,
            metadata={"rule": rule.name},
        )
        for rule in rules
    ]

    @dg.multi_asset_check(
        name=f"{entity}_checks",
        specs=specs,
        description=f"Data checks of {entity}, per site.",
        can_subset=True,
    )
    def _checks(
        context: dg.AssetCheckExecutionContext,
        dashboard_database: DashboardDatabase,
        template_check_settings: TemplateCheckSettings,
    ) -> Iterator[dg.AssetCheckResult]:
        target = CheckTarget(site=context.partition_key, entity=entity, run_id=context.run.run_id)
        selected = {key.name for key in context.selected_asset_check_keys}
        with dashboard_database.engine().connect() as conn:
            for rule in rules:
                if rule.name in selected:
                    result = rule.evaluate(conn, target, template_check_settings)
                    yield dg.AssetCheckResult(
                        asset_key=dg.AssetKey(entity),
                        check_name=rule.name,
                        passed=result.passed,
                        severity=result.severity,
                        description=result.description,
                        metadata=result.metadata,
                    )

    return _checks


def build_template_checks() -> list[dg.AssetChecksDefinition]:
    with warnings.catch_warnings():
        # Partitioned asset checks are a preview feature of Dagster 1.13; they are what makes
        # each site's result visible on its own partition.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [build_entity_checks(entity) for entity in ALL_ENTITIES if rules_for(entity)]


template_checks: list[dg.AssetChecksDefinition] = build_template_checks()


# --------------------------------------------------------------------------------------------
# Freshness for every site at once (the hourly health job)


def _last_successes(conn: sa.Connection, sites: Sequence[str]) -> dict[tuple[str, str], datetime]:
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
    last = _last_successes(conn, sites) if sites else {}
    for site in sites:
        for entity in ALL_ENTITIES:
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


# --------------------------------------------------------------------------------------------
# The mass-delete guard, reported by the IO manager

_REPORTED_ATTR = "_template_reported_as_check"
_report_lock = threading.Lock()


def report_refused_sync(context: dg.OutputContext, exc: Exception) -> bool:
    """Log a refused write as a failed evaluation of the asset's blocking ``mass_delete_guard``.

    Called by the IO manager's ``handle_output`` just before it re-raises
    :class:`~template_pipeline.defs.io_manager.MassDeleteRefusedError`: the step fails as before
    (nothing downstream runs), and the refusal also shows on the asset's checks, per site, with
    its numbers, where the alerts sensor finds it. ``exc`` is read for its ``site``,
    ``live_rows``, ``to_delete``, ``max_delete_fraction`` and ``min_rows_for_guard``.

    Returns whether an evaluation was logged: not outside a run, not when the job does not
    define the check, and not twice for one exception. Never raises: reporting must not hide
    the refusal itself.
    """
    try:
        with _report_lock:
            if getattr(exc, _REPORTED_ATTR, False):
                return False
            setattr(exc, _REPORTED_ATTR, True)
        if not context.has_asset_key:
            return False
        check_key = dg.AssetCheckKey(context.asset_key, MASS_DELETE_GUARD)
        step_context = context.step_context
        if check_key not in step_context.job_def.asset_layer.asset_graph.asset_check_keys:
            return False
        live_rows = int(getattr(exc, "live_rows", 0))
        to_delete = int(getattr(exc, "to_delete", 0))
        evaluation = dg.AssetCheckEvaluation(
            asset_key=context.asset_key,
            check_name=MASS_DELETE_GUARD,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            blocking=True,
            partition=context.asset_partition_key if context.has_asset_partitions else None,
            description=str(exc),
            metadata={
                "status": "refused",
                "live_rows": live_rows,
                "would_delete": to_delete,
                "would_delete_pct": _pct(to_delete, live_rows),
                "max_delete_fraction": float(getattr(exc, "max_delete_fraction", 0.0)),
                "min_rows_for_guard": int(getattr(exc, "min_rows_for_guard", 0)),
                "sync_run_id": context.run_id,
            },
        )
        # Building a step event logs it to the run's event log (Dagster has no public way to
        # emit a check evaluation from an IO manager; this is what AssetCheckResult becomes).
        from dagster._core.events import DagsterEvent

        DagsterEvent.asset_check_evaluation(step_context, evaluation)
        return True
    except Exception:
        logger.warning("could not report the refused sync as a failed check", exc_info=True)
        return False


__all__ = [
    "CHECK_RULES",
    "FRESHNESS",
    "MASS_DELETE_GUARD",
    "CheckRule",
    "CheckTarget",
    "DashboardDatabase",
    "TemplateCheckSettings",
    "build_entity_checks",
    "freshness_evaluations",
    "report_refused_sync",
    "rules_for",
    "template_checks",
]
