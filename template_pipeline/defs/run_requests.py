"""The run requests of the sync job, as the schedules and sensors ask for them."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from template_pipeline.defs.tags import TRIGGER_TAG, site_run_tags


def sync_request(
    site: str, entities: Sequence[str] | None, run_key: str, trigger: str
) -> dg.RunRequest:
    """A run of ``template_site_sync`` for one site (``entities=None``: all of its assets)."""
    return dg.RunRequest(
        run_key=run_key,
        partition_key=site,
        asset_selection=None if entities is None else [dg.AssetKey(e) for e in entities],
        tags={**site_run_tags(site), TRIGGER_TAG: trigger},
    )
