"""The check rules, and the asset checks built from them for every entity of the registry.

Every check is a :class:`CheckRule` (a name, what it guards, which entities it applies to, how
to evaluate it), and the entities come from the registry, so a new endpoint gets its checks
without a line here. :data:`template_checks` holds one ``AssetChecksDefinition`` per entity
(one op, ``<entity>_checks``, evaluating every rule of the entity on one connection), with one
``AssetCheckSpec`` per rule, partitioned like the assets.

A blocking check that fails with ERROR stops the assets downstream in the same run: a reject
rate above the threshold on ``orders`` keeps ``order_items`` from being rebuilt from bad orders.
"""

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg

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
        return [build_entity_checks(entity) for entity in NAMES if rules_for(entity)]


template_checks: list[dg.AssetChecksDefinition] = build_template_checks()
