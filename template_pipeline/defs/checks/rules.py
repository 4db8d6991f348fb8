"""The check rules, and the check specs built from them for every entity of the registry.

Every check is a :class:`CheckRule` (a name, what it guards, which entities it applies to, how
to evaluate it), and the entities come from the registry, so a new endpoint gets its checks
without a line here. Every rule but freshness is a check spec of the sync asset itself
(:func:`sync_check_specs`): the sync evaluates a site's checks right after writing its data, in
the same step, with the numbers of that write. Freshness passes by definition in a sync, so it
is its own ``AssetChecksDefinition`` (:data:`freshness_checks`), evaluated hourly by the health
job for every site.

A blocking check that fails with ERROR stops the assets downstream for that site: a reject rate
above the threshold on ``orders`` keeps ``order_items`` from being rebuilt from bad orders.
"""

import warnings
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg
import sqlalchemy as sa

from template_pipeline.defs.checks.evaluations import (
    evaluate_mass_delete_guard,
    evaluate_matches_site_stats,
    evaluate_reject_rate,
    evaluate_site_name_present,
    evaluate_unique_ids,
)
from template_pipeline.defs.checks.facts import FRESHNESS, MASS_DELETE_GUARD, CheckTarget, Evaluate
from template_pipeline.defs.checks.freshness import evaluate_freshness
from template_pipeline.defs.checks.reconciliation import (
    evaluate_items_reference_paintings,
    evaluate_order_totals,
)
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import DashboardDatabase, TemplateCheckSettings
from template_pipeline.domain.entities import ENTITIES, NAMES


@dataclass(frozen=True)
class CheckRule:
    """One check, applied to each of ``entities``; ``deps`` names assets it must run after."""

    name: str
    description: str
    entities: tuple[str, ...]
    evaluate: Evaluate
    blocking: bool = False
    deps: Callable[[str], tuple[str, ...]] = lambda entity: ()


# Endpoints serving records (rejects and duplicate ids are possible): settings and the lists.
RECORD_ENTITIES = tuple(e.name for e in ENTITIES if e.has_records)


# List endpoints the site's own stats count.
COUNTED_ENTITIES = tuple(e.name for e in ENTITIES if e.counted_by_stats)


# Entities merged into a current-state table, where the IO manager's mass-delete guard applies.
MERGED_ENTITIES = tuple(e.name for e in ENTITIES if e.merged)


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
        NAMES,
        evaluate_freshness,
    ),
    CheckRule(
        "site_name_present",
        "The settings hold a site_name (the name the Dashboard shows).",
        ("settings",),
        evaluate_site_name_present,
    ),
)


RULES: dict[str, CheckRule] = {rule.name: rule for rule in CHECK_RULES}
T = TypeVar("T")


def rules_for(entity: str, *, include_freshness: bool = True) -> list[CheckRule]:
    return [
        rule
        for rule in CHECK_RULES
        if entity in rule.entities and (include_freshness or rule.name != FRESHNESS)
    ]


def _spec(rule: CheckRule, entity: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        rule.name,
        asset=dg.AssetKey(entity),
        description=rule.description,
        blocking=rule.blocking,
        additional_deps=[dg.AssetKey(dep) for dep in rule.deps(entity)],
        partitions_def=sites_partitions,
        metadata={"rule": rule.name},
    )


def _quietly(build: Callable[[], T]) -> T:
    with warnings.catch_warnings():
        # Partitioned asset checks are a preview feature of Dagster 1.13; they are what makes
        # each site's result visible on its own partition.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return build()


def sync_check_specs() -> list[dg.AssetCheckSpec]:
    """The check specs of the sync asset: every rule but freshness, for every entity."""
    return _quietly(
        lambda: [
            _spec(rule, entity)
            for entity in NAMES
            for rule in rules_for(entity, include_freshness=False)
        ]
    )


def evaluate_rules(
    conn: sa.Connection,
    target: CheckTarget,
    settings: TemplateCheckSettings,
    selected: Collection[str] | None = None,
) -> Iterator[tuple[CheckRule, dg.AssetCheckResult]]:
    """Evaluate the target entity's rules (those in ``selected``, by default all but freshness)."""
    for rule in rules_for(target.entity, include_freshness=selected is not None):
        if selected is None or rule.name in selected:
            yield rule, rule.evaluate(conn, target, settings)


def _build_freshness_checks() -> dg.AssetChecksDefinition:
    specs = [_spec(RULES[FRESHNESS], entity) for entity in NAMES]

    @dg.multi_asset_check(
        name="template_freshness",
        specs=specs,
        description="Was each site's data synced within the freshness window? (The health "
        "job evaluates it hourly for every site.)",
        can_subset=True,
    )
    def _freshness(
        context: dg.AssetCheckExecutionContext,
        dashboard_database: DashboardDatabase,
        template_check_settings: TemplateCheckSettings,
    ) -> Iterator[dg.AssetCheckEvaluation]:
        selected = {key.asset_key.path[-1] for key in context.selected_asset_check_keys}
        for site in context.partition_keys:
            with dashboard_database.engine().connect() as conn:
                for entity in NAMES:
                    if entity in selected:
                        target = CheckTarget(site=site, entity=entity)
                        result = evaluate_freshness(conn, target, template_check_settings)
                        yield evaluation(entity, FRESHNESS, site, result, blocking=False)

    return _freshness


def evaluation(
    entity: str, check: str, site: str, result: dg.AssetCheckResult, *, blocking: bool
) -> dg.AssetCheckEvaluation:
    """A check result as the evaluation of one site partition."""
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(entity),
        check_name=check,
        passed=result.passed,
        severity=result.severity,
        description=result.description,
        metadata=result.metadata,
        blocking=blocking,
        partition=site,
    )


freshness_checks: dg.AssetChecksDefinition = _quietly(_build_freshness_checks)
