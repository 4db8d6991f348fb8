"""The Postgres IO manager: each site partition of an entity asset into its Dashboard table.

``handle_output`` streams the asset's :class:`~template_pipeline.domain.batches.EntitySnapshot`
into the table through :func:`~template_pipeline.store.writer.write_snapshot` (one site, one
entity, one transaction) and records the counts as materialisation metadata; ``load_input``
reads a site's live rows back for downstream assets, as a DataFrame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from template_pipeline.defs.sync.metadata import sync_metadata
from template_pipeline.domain.batches import EntitySnapshot
from template_pipeline.store.reads import read_live_rows
from template_pipeline.store.results import MassDeleteRefusedError
from template_pipeline.store.schema_version import SchemaVersionError
from template_pipeline.store.writer import write_snapshot

if TYPE_CHECKING:
    import pandas as pd


class TemplatePostgresIOManager(dg.ConfigurableIOManager):
    """Writes each site partition of an entity asset into its Dashboard table, atomically."""

    database_url: str = Field(
        description="SQLAlchemy URL of the Dashboard's PostgreSQL (DASHBOARD_DATABASE_URL)."
    )
    max_delete_fraction: float = Field(
        default=0.5,
        description=(
            "Refuse a snapshot that would soft-delete more than this share of a site's live "
            "rows (1.0 disables the guard)."
        ),
    )
    min_rows_for_guard: int = Field(
        default=10,
        description="The share rule applies only to sites with at least this many live rows.",
    )

    def handle_output(self, context: dg.OutputContext, obj: EntitySnapshot) -> None:
        if not isinstance(obj, EntitySnapshot):
            raise TypeError(
                f"{_describe_asset(context)} returned {type(obj).__name__}; assets written by "
                "TemplatePostgresIOManager must return an EntitySnapshot"
            )
        site = _partition_key(context)
        if obj.site != site:
            raise ValueError(
                f"{_describe_asset(context)}: snapshot of site {obj.site!r} returned for "
                f"partition {site!r}"
            )
        if context.has_asset_key and context.asset_key.path[-1] != obj.entity:
            raise ValueError(
                f"{_describe_asset(context)}: snapshot of entity {obj.entity!r} returned by "
                f"asset {context.asset_key.to_user_string()!r}"
            )
        try:
            result = write_snapshot(
                self.database_url,
                obj,
                run_id=context.run_id,
                max_delete_fraction=self.max_delete_fraction,
                min_rows_for_guard=self.min_rows_for_guard,
                log=context.log,
            )
        except MassDeleteRefusedError as exc:
            # Not retried: a retry would only fetch the same short list again, minutes apart.
            raise dg.Failure(
                description=str(exc),
                metadata={
                    "site": exc.site,
                    "entity": exc.entity,
                    "live_rows": exc.live_rows,
                    "would_delete": exc.to_delete,
                },
                allow_retries=False,
            ) from exc
        except SchemaVersionError as exc:
            # Nothing was written; a retry minutes later would meet the same schema.
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        context.add_output_metadata(sync_metadata(result))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        if not context.has_asset_key:
            raise ValueError("TemplatePostgresIOManager loads assets only (the input has no key)")
        entity = context.asset_key.path[-1]
        if context.has_asset_partitions:
            site = context.asset_partition_key
        elif context.has_partition_key:
            site = context.partition_key
        else:
            raise ValueError(f"loading {entity!r} needs a site partition")
        # ``AssetIn(metadata={"columns": [...]})`` narrows the read (Dagster's database IO
        # managers' convention): order_items needs two columns of the orders, not their dates
        # and extras, and reading only those is most of the time of that step on a large site.
        columns = (
            context.definition_metadata.get("columns") if context.definition_metadata else None
        )
        if columns is not None and (
            isinstance(columns, str) or not all(isinstance(c, str) for c in columns)
        ):
            raise ValueError(
                f"input {entity!r}: the 'columns' metadata must be a list of column names"
            )
        return read_live_rows(self.database_url, entity, site, columns)


def _describe_asset(context: dg.OutputContext) -> str:
    if context.has_asset_key:
        return f"asset {context.asset_key.to_user_string()!r}"
    return "output"


def _partition_key(context: dg.OutputContext) -> str:
    if context.has_asset_partitions:
        return context.asset_partition_key
    if context.has_partition_key:
        return context.partition_key
    raise ValueError(f"{_describe_asset(context)} is written per site: it needs a partition key")
