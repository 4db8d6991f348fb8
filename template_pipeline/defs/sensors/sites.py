"""``template_sites_sensor`` (every 30 s): the site partitions follow the site registry.

Reconciles the ``template_sites`` dynamic partitions with the registry through
``SensorResult(dynamic_partitions_requests=...)``: a new site gets its partition and a first
full sync (many new sites a run), a site no longer configured loses its partition (its rows in
the Dashboard are kept). Nothing changed: ``SkipReason``. An unusable registry (a typo in the
sites file, a missing key variable): ``SkipReason`` naming the problem, partitions left as they
are.
"""

import json
from dataclasses import dataclass

import dagster as dg

from template_pipeline.defs.assets import template_site_sync_job
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import TemplateClientResource
from template_pipeline.defs.run_requests import sync_request, windows
from template_pipeline.domain.sites import SiteConfigError


@dataclass(frozen=True)
class SitesCursor:
    """The registry's keys at the last change, and how many changes were applied (run keys)."""

    sites: tuple[str, ...] = ()
    generation: int = 0

    def to_json(self) -> str:
        return json.dumps({"sites": list(self.sites), "generation": self.generation})

    @classmethod
    def from_json(cls, raw: str | None) -> "SitesCursor":
        try:
            data = json.loads(raw) if raw else {}
            return cls(tuple(data.get("sites", ())), int(data.get("generation", 0)))
        except (ValueError, TypeError, AttributeError):
            return cls()


@dg.sensor(
    name="template_sites_sensor",
    job=template_site_sync_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a partition and a first full sync for each new site of the registry; "
    "removes the partitions of sites no longer configured (their data is kept).",
)
def template_sites_sensor(
    context: dg.SensorEvaluationContext, template_client: TemplateClientResource
):
    try:
        wanted = template_client.registry().keys()
    except SiteConfigError as exc:
        return dg.SkipReason(f"site registry unusable, partitions left unchanged: {exc}")
    existing = set(context.instance.get_dynamic_partitions(sites_partitions.name))
    added = [key for key in wanted if key not in existing]
    removed = sorted(existing - set(wanted))
    cursor = SitesCursor.from_json(context.cursor)
    if not added and not removed:
        return dg.SensorResult(
            skip_reason=f"{len(wanted)} site(s) in the registry, partitions up to date",
            cursor=SitesCursor(tuple(sorted(wanted)), cursor.generation).to_json(),
        )
    generation = cursor.generation + 1
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if added:
        requests.append(sites_partitions.build_add_request(added))
    if removed:
        # Only the partition goes: the Dashboard rows of the site stay where they are.
        requests.append(sites_partitions.build_delete_request(removed))
    context.log.info(
        f"sites added: {', '.join(added) or 'none'}; removed: {', '.join(removed) or 'none'}"
    )
    return dg.SensorResult(
        # New partitions are appended in this order, so they form ranges of their own. The
        # generation in the key: a site removed and added back gets a first sync again.
        run_requests=[
            sync_request(
                window,
                run_key=f"first-sync:{window[0]}..{window[-1]}:{generation}",
                trigger="new-site",
            )
            for window in windows(added)
        ],
        dynamic_partitions_requests=requests,
        cursor=SitesCursor(tuple(sorted(wanted)), generation).to_json(),
    )
