"""The assets: one per entity of the registry, all materialised by one step per run.

Every entity is an asset partitioned by site (``settings``, ``paintings``, ... and
``order_items``, derived from ``orders``: the lineage graph shows it), with its checks as check
specs. One multi-asset step syncs every site of its run, each site alone (see ``defs.sync``):
a run of fifty sites is one step, not sixteen steps a site. Selecting some assets (the UI's
Materialize, the changes sensor) syncs only those; selecting only checks evaluates them on the
stored data. The step yields no output: it reports each site's partitions one by one, so a
failed site leaves only its own partitions unmaterialised.
"""

# No ``from __future__ import annotations``: Dagster reads the asset's parameter annotations.
from collections.abc import Iterator

import dagster as dg

from template_pipeline.defs.checks import sync_check_specs
from template_pipeline.defs.io_manager import TemplatePostgresIOManager
from template_pipeline.defs.liveness import heartbeat
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import (
    TemplateCheckSettings,
    TemplateClientResource,
    TemplateSyncSettings,
)
from template_pipeline.defs.sync.batch import run_batch
from template_pipeline.defs.sync.site import SyncSettings
from template_pipeline.defs.tags import GROUP, IO_MANAGER_KEY
from template_pipeline.domain.entities import ENTITIES, Entity
from template_pipeline.domain.sites import SiteConfigError

SYNC_JOB_NAME = "template_site_sync"


def _spec(entity: Entity) -> dg.AssetSpec:
    metadata = {"table": entity.table}
    if entity.endpoint:
        metadata["endpoint"] = f"/api/export/{entity.endpoint}"
    return dg.AssetSpec(
        entity.name,
        description=entity.description,
        group_name=GROUP,
        kinds={"python", "postgres"},
        metadata=metadata,
        deps=[entity.derived_from] if entity.derived_from else [],
        partitions_def=sites_partitions,
        skippable=True,
    ).with_io_manager_key(IO_MANAGER_KEY)


@dg.multi_asset(
    name="template_sync",
    specs=[_spec(entity) for entity in ENTITIES],
    check_specs=sync_check_specs(),
    partitions_def=sites_partitions,
    can_subset=True,
    description="Sync the run's sites: fetch, validate, write and check each site alone.",
)
def template_sync(
    context: dg.AssetExecutionContext,
    template_client: TemplateClientResource,
    dashboard_io_manager: dg.ResourceParam[TemplatePostgresIOManager],
    template_check_settings: TemplateCheckSettings,
    template_sync_settings: TemplateSyncSettings,
) -> Iterator[dg.AssetMaterialization]:
    sites = list(context.partition_keys)  # one query: read once
    try:
        registry = template_client.registry()
    except SiteConfigError as exc:  # every site of the run fails with the reason
        registry = exc
    settings = SyncSettings(
        database_url=dashboard_io_manager.database_url,
        run_id=context.run.run_id,
        client=template_client.settings(),
        checks=template_check_settings,
        entities=frozenset(key.path[-1] for key in context.selected_asset_keys),
        check_keys=frozenset(
            (key.asset_key.path[-1], key.name) for key in context.selected_asset_check_keys
        ),
        max_delete_fraction=dashboard_io_manager.max_delete_fraction,
        min_rows_for_guard=dashboard_io_manager.min_rows_for_guard,
        full_max_records=template_sync_settings.full_export_max_records,
        lock_wait_s=template_sync_settings.site_lock_wait_s,
    )
    # The run's process and heartbeat, in its tags: a run whose process dies is found and
    # failed (defs.liveness), never left STARTED in front of its sites' queue.
    with heartbeat(context.instance, context.run.run_id):
        for event in run_batch(
            context.log, sites, registry, settings, workers=template_sync_settings.workers
        ):
            if isinstance(event, dg.AssetCheckEvaluation):
                # Logged, not yielded: a yielded failed blocking evaluation fails the whole
                # step, every site of the batch with it. The sync itself keeps what a failed
                # blocking check guards (the site's order lines) as it was, site by site.
                context.log_event(event)
            else:
                yield event


template_assets: list[dg.AssetsDefinition] = [template_sync]

template_site_sync_job = dg.define_asset_job(
    SYNC_JOB_NAME,
    # The sync's own checks; freshness is the health job's (in a sync it passes by definition).
    selection=dg.AssetSelection.assets(template_sync).without_checks()
    | dg.AssetSelection.checks(*template_sync.check_keys),
    description="Every asset of the run's sites: the unit of the nightly sync, the sensors and "
    "template-pipeline sync.",
)
