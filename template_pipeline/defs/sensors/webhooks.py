"""``template_webhook_sensor`` (every 30 s): pending webhook events become sync runs.

Turns pending ``template_webhook_events`` into one run per site for the entities the events
name, and marks them consumed (with the run key).
"""

from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from template_pipeline.defs.assets import template_site_sync_job
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import DashboardDatabase
from template_pipeline.defs.run_requests import sync_request
from template_pipeline.domain.entities import entities_for_events
from template_pipeline.store.ops_tables import template_webhook_events

WEBHOOK_BATCH = 500


@dataclass(frozen=True)
class WebhookBatch:
    """The pending events of one site, claimed by one sensor tick."""

    site: str
    event_ids: tuple[int, ...]
    events: tuple[str, ...]
    entities: tuple[str, ...]
    run_key: str | None  # None: consumed without a run (see ``claim_webhook_events``)


def claim_webhook_events(
    engine: sa.Engine, registered: Iterable[str], limit: int = WEBHOOK_BATCH
) -> list[WebhookBatch]:
    """Mark up to ``limit`` pending events consumed and return them grouped by site.

    Events of a site that is not a partition (yet) are consumed without a run: the site's first
    full sync, requested by the sites sensor, covers them. If the tick fails after this commit,
    the runs it asked for are lost; the changes sensor and the nightly sync catch up.
    """
    events = template_webhook_events
    registered = set(registered)
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(events.c.id, events.c.site, events.c.event)
            .where(events.c.consumed_at.is_(None))
            .order_by(events.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        by_site: dict[str, list[sa.Row]] = {}
        for row in rows:
            by_site.setdefault(row.site, []).append(row)
        batches = []
        for site, site_rows in by_site.items():
            ids = tuple(row.id for row in site_rows)
            names = tuple(row.event for row in site_rows)
            entities = tuple(entities_for_events(names))
            run_key = (
                f"webhook:{site}:{ids[0]}-{ids[-1]}" if entities and site in registered else None
            )
            conn.execute(
                sa.update(events)
                .where(events.c.id.in_(ids))
                .values(consumed_at=sa.func.now(), run_key=run_key)
            )
            batches.append(WebhookBatch(site, ids, names, entities, run_key))
    return batches


@dg.sensor(
    name="template_webhook_sensor",
    job=template_site_sync_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Turns pending template_webhook_events into sync runs of the site and "
    "entities they name, and marks them consumed.",
)
def template_webhook_sensor(
    context: dg.SensorEvaluationContext, dashboard_database: DashboardDatabase
):
    registered = context.instance.get_dynamic_partitions(sites_partitions.name)
    batches = claim_webhook_events(dashboard_database.engine(), registered)
    if not batches:
        return dg.SkipReason("no pending webhook event")
    run_requests = []
    for batch in batches:
        if batch.run_key is None:
            why = "no partition yet" if batch.entities else "no entity to sync"
            context.log.info(
                f"site {batch.site}: {len(batch.event_ids)} webhook event(s) consumed without a "
                f"run ({why})"
            )
            continue
        run_requests.append(
            sync_request(
                [batch.site], run_key=batch.run_key, trigger="webhook", entities=batch.entities
            )
        )
    cursor = str(max(batch.event_ids[-1] for batch in batches))
    if not run_requests:
        return dg.SensorResult(
            skip_reason="the pending webhook events needed no run", cursor=cursor
        )
    return dg.SensorResult(run_requests=run_requests, cursor=cursor)
