"""Reading one site's export: the stats first, then every table, from ``full`` when it is small.

The stats come first: they say how big the site is (a small site is read through the ``full``
export, one request for every table, instead of one paginated request per endpoint) and what it
should serve. A ``full`` export that fails is not a failure of the site: its tables are read
from their own endpoints, as for a large site.

:func:`entity_snapshot` turns pages into the stream of validated batches the writer consumes,
letting unchanged records off validation when the site's stored hashes are known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from template_pipeline.defs.sync.outcomes import Failure, classify
from template_pipeline.domain import stop
from template_pipeline.domain.batches import EntitySnapshot, ValidatedBatch
from template_pipeline.domain.changes import ChangeFilter, KnownRows, entity_salt
from template_pipeline.domain.entities import BY_NAME, FULL_EXPORT
from template_pipeline.domain.validation import validate_records, validate_stats
from template_pipeline.source import TemplateClient, TemplateError

Page = list[dict[str, Any]]
Log = Callable[[str], None]


@dataclass
class SiteExport:
    """What was read of a site before its writes."""

    stats_row: dict[str, Any] | None = None
    stats_failure: Failure | None = None
    full: dict[str, Page] | None = None  # entity -> records, when the full export was read
    notes: list[str] = field(default_factory=list)

    @property
    def total_records(self) -> int | None:
        """The records the site's stats announce, over the tables ``full`` would carry."""
        if self.stats_row is None:
            return None
        counts = [self.stats_row.get(e.name) for e in FULL_EXPORT if e.name in self.stats_row]
        if any(count is None for count in counts):
            return None
        return sum(counts)  # type: ignore[arg-type]

    def announced(self, entity: str) -> int | None:
        """How many records of ``entity`` the site's stats announce (``None``: not known)."""
        if self.stats_row is None or not BY_NAME[entity].counted_by_stats:
            return None
        count = self.stats_row.get(entity)
        return count if isinstance(count, int) else None


def read_export(
    client: TemplateClient, selected: frozenset[str], *, full_max_records: int
) -> SiteExport:
    """The site's stats, and its ``full`` export when it is small and worth one request.

    A refused key or an unreachable site raises (nothing else of the site can be read); an
    unusable stats document is the stats entity's failure only.
    """
    export = SiteExport()
    try:
        export.stats_row = validate_stats(client.fetch_stats())
    except ValueError as exc:
        error = TemplateError(f"unusable stats document: {exc}", site=client.site, endpoint="stats")
        export.stats_failure = classify(error)
    except TemplateError as exc:
        failure = classify(exc)
        if failure.site_wide:
            raise
        export.stats_failure = failure
    tables = [e.name for e in FULL_EXPORT if e.name in selected]
    total = export.total_records
    if len(tables) >= 2 and total is not None and total <= full_max_records:
        try:
            export.full = client.fetch_full()
        except TemplateError as exc:
            if classify(exc).site_wide:
                raise
            export.notes.append(f"full export unusable, reading each endpoint: {exc}")
    return export


def entity_pages(client: TemplateClient, entity: str, export: SiteExport) -> Iterator[Page]:
    """The raw records of one entity, page by page."""
    if export.full is not None and entity in export.full:
        yield export.full[entity]
        return
    spec = BY_NAME[entity]
    if spec.kind == "settings":
        yield client.fetch_settings()
        return
    # Pages are fetched ahead in a thread while the previous page is validated and copied into
    # PostgreSQL: network and database time overlap. The stats' count bounds the listing: a
    # server that never stops serving records is stopped far past what the site announced.
    for page in client.iter_pages_prefetched(
        spec.endpoint, expected_total=export.announced(entity)
    ):
        stop.check()  # SIGTERM / SIGINT: the entity's transaction rolls back from here
        yield page


def entity_snapshot(
    site: str,
    entity: str,
    pages: Iterator[Page],
    *,
    base_url: str,
    known: KnownRows | None,
) -> EntitySnapshot:
    """A lazy snapshot of ``pages``: each page filtered (when ``known``), then validated."""
    changes = ChangeFilter(entity, known, entity_salt(entity, base_url)) if known else None

    def batches() -> Iterator[ValidatedBatch]:
        for page in pages:
            if changes is None:
                yield validate_records(entity, page, base_url=base_url)
                continue
            records, hashes = changes.split(page)
            yield validate_records(entity, records, base_url=base_url, hashes=hashes)

    return EntitySnapshot(
        site=site, entity=entity, batches=batches(), source=base_url, changes=changes
    )


def stats_snapshot(site: str, row: dict[str, Any], base_url: str) -> EntitySnapshot:
    return EntitySnapshot(
        site=site,
        entity="stats",
        batches=[ValidatedBatch(rows=[row], fetched=1)],
        source=base_url,
    )
