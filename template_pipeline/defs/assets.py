"""One asset per export endpoint, partitioned by site, built from the entity registry.

An asset fetches its endpoint page by page, validates each page as it arrives and returns an
:class:`EntitySnapshot` whose batches the Postgres IO manager streams into the dashboard table in
one transaction. Nothing here writes to the database: assets return data, the IO manager writes
it (and records the counts as materialisation metadata).
"""

import itertools
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
import pandas as pd

from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.resources import TemplateClientResource
from template_pipeline.defs.tags import GROUP, IO_MANAGER_KEY
from template_pipeline.domain.batches import EntitySnapshot, ValidatedBatch
from template_pipeline.domain.entities import BY_NAME, ENTITIES, Entity
from template_pipeline.domain.sites import SiteConfigError
from template_pipeline.domain.validation import (
    explode_order_items,
    validate_records,
    validate_stats,
)
from template_pipeline.source import (
    TemplateAuthenticationError,
    TemplateClient,
    TemplateConnectionError,
    TemplateError,
    TemplateNotFoundError,
)

# Failures the client does not retry itself (5xx and 429 beyond its budget, an unusable answer,
# a database error in the IO manager) get another chance from Dagster. Configuration errors, a
# refused key, a missing endpoint and an unreachable site are raised as non-retryable Failures:
# the client has already retried the connection with backoff, and another round per step would
# hold the run (and ``template-pipeline sync``) for minutes on a site that is down; the next
# scheduled sync picks it up.
STEP_RETRY_POLICY = dg.RetryPolicy(
    max_retries=2, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


_NON_RETRYABLE_ERRORS = (
    SiteConfigError,
    TemplateAuthenticationError,
    TemplateNotFoundError,
    TemplateConnectionError,
)
# The counters of template_stats; with revenue, what the stats asset plots in the Dagster UI.
STATS_COUNTERS = tuple(e.name for e in ENTITIES if e.counted_by_stats)
# Other numbers a site's stats document may carry (available_paintings, ...), plotted too.
_MAX_EXTRA_STATS_METADATA = 20
# Plain names only: Dagster gives meaning to some metadata keys ("dagster/...").
_EXTRA_STATS_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _non_retryable(site: str, exc: Exception) -> dg.Failure:
    return dg.Failure(description=str(exc), metadata={"site": site}, allow_retries=False)


def stats_metadata(row: Mapping[str, Any]) -> dict[str, dg.MetadataValue]:
    """A ``template_stats`` row as numeric metadata, so the UI plots a site's numbers over time.

    The modelled counters and revenue come first; other top-level numbers of the site's document
    follow under their own names (bounded, and never text: the document may hold anything).
    """
    metadata: dict[str, dg.MetadataValue] = {
        name: dg.MetadataValue.int(int(row[name]))
        for name in STATS_COUNTERS
        if row.get(name) is not None
    }
    if row.get("revenue") is not None:
        metadata["revenue"] = dg.MetadataValue.float(float(row["revenue"]))
    payload = row.get("payload")
    if isinstance(payload, Mapping):
        extras = 0
        for name, value in payload.items():
            if extras >= _MAX_EXTRA_STATS_METADATA:
                break
            if (
                not isinstance(name, str)
                or not _EXTRA_STATS_NAME_RE.match(name)
                or name in BY_NAME["stats"].known_fields
                or name in metadata
                or isinstance(value, bool)
                or not isinstance(value, (int, float))
            ):
                continue
            if isinstance(value, int):
                metadata[name] = dg.MetadataValue.int(value)
            elif math.isfinite(value):
                metadata[name] = dg.MetadataValue.float(value)
            else:
                continue
            extras += 1
    return metadata


def _first_then_rest(batches: Iterator[ValidatedBatch]) -> Iterator[ValidatedBatch]:
    """Pull the first batch now so that an unreachable site or a refused key fails the asset
    step itself (clear in the UI), not later inside the IO manager."""
    first = next(batches, None)
    return batches if first is None else itertools.chain((first,), batches)


def _batches(spec: Entity, client: TemplateClient) -> Iterator[ValidatedBatch]:
    try:
        if spec.kind == "list":
            # Pages are fetched ahead in a thread while the previous page is validated and
            # copied into PostgreSQL: network and database time overlap.
            for page in client.iter_pages_prefetched(spec.endpoint):
                yield validate_records(spec.name, page, base_url=client.base_url)
        elif spec.kind == "settings":
            yield validate_records(spec.name, client.fetch_settings())
        else:
            payload = client.fetch_stats()
            try:
                row = validate_stats(payload)
            except ValueError as exc:
                raise TemplateError(
                    f"unusable stats document: {exc}", site=client.site, endpoint=spec.endpoint
                ) from None
            yield ValidatedBatch(rows=[row], fetched=1)
    finally:
        client.close()


def build_endpoint_asset(spec: Entity) -> dg.AssetsDefinition:
    @dg.asset(
        name=spec.name,
        partitions_def=sites_partitions,
        group_name=GROUP,
        kinds={"python", "postgres"},
        io_manager_key=IO_MANAGER_KEY,
        description=spec.description,
        metadata={"table": spec.table, "endpoint": f"/api/export/{spec.endpoint}"},
        retry_policy=STEP_RETRY_POLICY,
    )
    def _endpoint_asset(
        context: dg.AssetExecutionContext, template_client: TemplateClientResource
    ) -> EntitySnapshot:
        site = context.partition_key
        try:
            client = template_client.get_client(site)
            if spec.kind == "stats":
                # One small document, read now so that its numbers become metadata too.
                stats_batches = list(_batches(spec, client))
                context.add_output_metadata(stats_metadata(stats_batches[0].rows[0]))
                batches: Iterable[ValidatedBatch] = stats_batches
            else:
                batches = _first_then_rest(_batches(spec, client))
        except _NON_RETRYABLE_ERRORS as exc:
            raise _non_retryable(site, exc) from None
        return EntitySnapshot(site=site, entity=spec.name, batches=batches, source=client.base_url)

    return _endpoint_asset


endpoint_assets: list[dg.AssetsDefinition] = [
    build_endpoint_asset(entity) for entity in ENTITIES if entity.endpoint is not None
]


@dg.asset(
    partitions_def=sites_partitions,
    group_name=GROUP,
    kinds={"python", "postgres"},
    io_manager_key=IO_MANAGER_KEY,
    metadata={"table": "template_order_items"},
    ins={"orders": dg.AssetIn(metadata={"columns": ["template_id", "items"]})},
    retry_policy=STEP_RETRY_POLICY,
)
def order_items(context: dg.AssetExecutionContext, orders: pd.DataFrame) -> EntitySnapshot:
    """Order lines: one row per item of each live order, derived from orders (shown in lineage)."""
    rows = explode_order_items(zip(orders["template_id"], orders["items"], strict=True))
    batch = ValidatedBatch(rows=rows, fetched=len(rows))
    return EntitySnapshot(site=context.partition_key, entity="order_items", batches=[batch])


template_assets: list[dg.AssetsDefinition] = [*endpoint_assets, order_items]

template_site_sync_job = dg.define_asset_job(
    "template_site_sync",
    selection=dg.AssetSelection.groups(GROUP),
    description="Every asset of one site: the unit of the nightly sync and of sensor requests.",
)
