"""The sync job's run requests: one site, or a window of sites in the partitions' order.

A run of many sites is a Dagster partition range (the range tags the UI, the CLI and backfills
use): contiguous in the order the sites were registered, at most ``TEMPLATE_SITES_PER_RUN``
sites. Scattered sites (the changes sensor's) are grouped into windows that may take a few
unchanged sites along, which costs little more than their fetch, rather than a run each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg

from template_pipeline.defs.tags import BATCH_TAG, TRIGGER_TAG, site_run_tags
from template_pipeline.domain import config

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def sites_per_run() -> int:
    return max(1, int(config.number(config.SITES_PER_RUN)))


def max_runtime_s() -> int:
    """Run monitoring fails a run older than this: a stuck run frees its queue slot."""
    return max(60, int(config.number(config.RUN_MAX_RUNTIME_S)))


def windows(
    ordered: Sequence[str],
    wanted: Iterable[str] | None = None,
    *,
    size: int | None = None,
    max_gap: int = 0,
) -> list[list[str]]:
    """Contiguous windows of ``ordered`` covering ``wanted`` (every site when None).

    A window holds at most ``size`` sites; up to ``max_gap`` unwanted sites between two wanted
    ones are taken along instead of starting a new window.
    """
    size = size or sites_per_run()
    wanted_set = set(ordered) if wanted is None else set(wanted)
    result: list[list[str]] = []
    current: list[str] = []
    pending_gap: list[str] = []
    for site in ordered:
        if site not in wanted_set:
            if current:
                pending_gap.append(site)
            continue
        fits = len(current) + len(pending_gap) + 1 <= size
        if current and len(pending_gap) <= max_gap and fits:
            current.extend(pending_gap)
        elif current:
            result.append(current)
            current = []
        current.append(site)
        pending_gap = []
    if current:
        result.append(current)
    return result


def sync_request(
    sites: Sequence[str],
    *,
    run_key: str,
    trigger: str,
    entities: Sequence[str] | None = None,
) -> dg.RunRequest:
    """A run of ``template_site_sync`` for one site or a window of sites (``entities=None``:
    every asset)."""
    if not sites:
        raise ValueError("a sync run needs at least one site")
    if len(sites) == 1:
        tags = site_run_tags(sites[0])
        partition_key: str | None = sites[0]
    else:
        tags = {
            RANGE_START_TAG: sites[0],
            RANGE_END_TAG: sites[-1],
            # One run per window at a time (dagster.yaml): the queue's per-partition limit does
            # not see the sites inside a range.
            BATCH_TAG: f"{sites[0]}..{sites[-1]}",
        }
        partition_key = None
    tags[TRIGGER_TAG] = trigger
    tags[dg.MAX_RUNTIME_SECONDS_TAG] = str(max_runtime_s())
    return dg.RunRequest(
        run_key=run_key,
        partition_key=partition_key,
        asset_selection=None if entities is None else [dg.AssetKey(e) for e in entities],
        tags=tags,
    )


def ordered_sites(instance: dg.DagsterInstance) -> list[str]:
    """The registered site partitions, in the order ranges are resolved (registration order)."""
    from template_pipeline.defs.partitions import sites_partitions

    return list(sites_partitions.get_partition_keys(dynamic_partitions_store=instance))
