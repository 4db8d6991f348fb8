"""Materialisation metadata: a sync's counts and a preview without personal data; stats plots."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from template_pipeline.domain.entities import BY_NAME, ENTITIES
from template_pipeline.store.results import SyncResult

# The counters of template_stats; with revenue, what the stats asset plots in the Dagster UI.
STATS_COUNTERS = tuple(e.name for e in ENTITIES if e.counted_by_stats)
# Other numbers a site's stats document may carry (available_paintings, ...), plotted too.
_MAX_EXTRA_STATS_METADATA = 20
# Plain names only: Dagster gives meaning to some metadata keys ("dagster/...").
_EXTRA_STATS_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def sync_metadata(result: SyncResult) -> dict[str, Any]:
    """Dagster materialisation metadata for a sync: counts, duration, a safe preview."""
    return {
        **result.counts(),
        "new_fields": dg.MetadataValue.json(list(result.new_fields)),
        "duration_s": dg.MetadataValue.float(round(result.duration_s, 3)),
        "table": dg.MetadataValue.text(result.table),
        "dagster/table_name": result.table,
        "dagster/row_count": int(result.live_rows),
        "dagster/partition_row_count": int(result.live_rows),
        "preview": dg.MetadataValue.md(preview_markdown(result.preview)),
    }


def preview_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "_no rows_"
    columns = list(rows[0])

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= 60 else text[:57] + "..."

    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows),
    ]
    return "\n".join(lines)


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
