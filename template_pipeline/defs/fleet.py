"""``fleet_status``: every site in one table, and the fleet's numbers plotted over time.

One non-partitioned asset whose materialisation metadata is the fleet table
(:func:`template_pipeline.store.fleet.markdown`: last successful sync, consecutive failures, last
error kind, records per entity, last duration, failing sites first) and its numbers
(``sites_ok``, ``sites_failing``, ``sites_stale``, ``records_synced``, ``refused_keys``), which
the UI's *Plots* tab charts across materialisations. It is refreshed by the hourly health job
(its ``refresh_fleet_status`` op records a materialisation of the asset) and after sync runs by
``template_fleet_sensor``, which runs :data:`fleet_status_job` once no other sync run is
queued or running (so once at the end of the nightly, not once per batch).
"""

from collections.abc import Sequence

import dagster as dg

from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import (
    DashboardDatabase,
    TemplateCheckSettings,
    TemplateClientResource,
)
from template_pipeline.defs.tags import GROUP
from template_pipeline.domain.sites import SiteConfigError
from template_pipeline.store.fleet import FleetStatus, markdown, read_fleet

FLEET_ASSET_KEY = dg.AssetKey("fleet_status")
FLEET_JOB_NAME = "template_fleet_status"


def fleet_sites(
    template_client: TemplateClientResource, instance: dg.DagsterInstance, log
) -> list[str]:
    """The registry's sites; its partitions (which follow it) when the registry is unusable."""
    try:
        return template_client.registry().keys()
    except SiteConfigError as exc:
        log.warning(f"site registry unusable ({exc}): listing the site partitions instead")
        return sorted(instance.get_dynamic_partitions(sites_partitions.name))


def fleet_metadata(fleet: FleetStatus) -> dict[str, dg.MetadataValue]:
    """The table, and the numbers the UI plots (ints, present on every materialisation)."""
    metadata: dict[str, dg.MetadataValue] = {
        name: dg.MetadataValue.int(value) for name, value in fleet.numbers().items()
    }
    metadata["fleet"] = dg.MetadataValue.md(markdown(fleet))
    metadata["failing"] = dg.MetadataValue.json(
        [s.site for s in fleet.sites if s.state == "failing"]
    )
    return metadata


def read_fleet_status(
    sites: Sequence[str], database: DashboardDatabase, checks: TemplateCheckSettings
) -> FleetStatus:
    with database.engine().connect() as conn:
        return read_fleet(conn, sites, stale_after=checks.freshness_window())


@dg.asset(
    key=FLEET_ASSET_KEY,
    group_name=GROUP,
    kinds={"python", "postgres"},
    description="Every site at a glance: last successful sync, failure streak, error kind, "
    "records, duration; failing sites first.",
)
def fleet_status(
    context: dg.AssetExecutionContext,
    template_client: TemplateClientResource,
    dashboard_database: DashboardDatabase,
    template_check_settings: TemplateCheckSettings,
) -> dg.MaterializeResult:
    sites = fleet_sites(template_client, context.instance, context.log)
    fleet = read_fleet_status(sites, dashboard_database, template_check_settings)
    context.log.info(_summary(fleet))
    return dg.MaterializeResult(metadata=fleet_metadata(fleet))


@dg.op(
    out=dg.Out(dg.Nothing),
    description="Refresh fleet_status: every site's sync state in one table.",
)
def refresh_fleet_status(
    context: dg.OpExecutionContext,
    template_client: TemplateClientResource,
    dashboard_database: DashboardDatabase,
    template_check_settings: TemplateCheckSettings,
):
    sites = fleet_sites(template_client, context.instance, context.log)
    fleet = read_fleet_status(sites, dashboard_database, template_check_settings)
    context.log.info(_summary(fleet))
    yield dg.AssetMaterialization(asset_key=FLEET_ASSET_KEY, metadata=fleet_metadata(fleet))


def _summary(fleet: FleetStatus) -> str:
    n = fleet.numbers()
    return (
        f"fleet: {n['sites']} site(s), {n['sites_ok']} ok, {n['sites_failing']} failing, "
        f"{n['sites_stale']} stale; {n['refused_keys']} refused key(s)"
    )


fleet_status_job = dg.define_asset_job(
    FLEET_JOB_NAME,
    selection=[fleet_status],
    description="Refresh fleet_status (after sync runs, by template_fleet_sensor).",
)
