"""The data that flows from an asset to the IO manager.

An asset does not hold a whole site in memory: it returns an :class:`EntitySnapshot` whose
``batches`` are produced page by page (fetch -> validate) while the IO manager streams them into
PostgreSQL. The snapshot is complete only once its batches are exhausted; the IO manager commits
only then, so a failure anywhere in the stream leaves the table as it was.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from template_pipeline.domain.changes import ChangeFilter


@dataclass(frozen=True, slots=True)
class Reject:
    """A record that failed validation, kept with its reason (quarantined, never dropped)."""

    template_id: str | None
    reason: str
    payload: Any


@dataclass(slots=True)
class ValidatedBatch:
    """One page of records after validation.

    ``rows`` are dicts keyed by the data columns of the entity's table (see ``tables.py``):
    plain Python values (str, int, Decimal, datetime, bool, None); ``extra`` and other JSON
    columns hold JSON-compatible values.
    """

    rows: list[dict[str, Any]]
    rejects: list[Reject] = field(default_factory=list)
    fetched: int = 0
    new_fields: set[str] = field(default_factory=set)
    # Set by a validation worker (store.offload): every row as the staging table's values, in
    # its column order, with the key of each; ``rows`` then holds only the first few rows (the
    # preview).
    staged: list[list[Any]] | None = None
    keys: list[Any] | None = None


@dataclass(slots=True)
class EntitySnapshot:
    """Everything a site currently serves for one entity, as a stream of validated batches.

    ``batches`` may be a generator: it is consumed exactly once, by the IO manager.
    """

    site: str
    entity: str
    batches: Iterable[ValidatedBatch]
    # Base URL of the site, for messages and previews (never the API key).
    source: str = ""
    # When the asset filtered unchanged records out (domain.changes), what it let off: the
    # writer needs their keys to tell them from records the site stopped serving.
    changes: ChangeFilter | None = None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch is validated or a snapshot streams.

    Both allocate millions of short-lived, acyclic objects (decoded pages, models, rows, COPY
    buffers) that count towards the collector's thresholds; in a run worker holding Dagster's
    whole object graph each full collection walks all of it for nothing (pydantic's docs measure
    about 2x on validation; a 200k-painting sync spent about 3 s of 30 s in 8 full collections).
    Left alone when the caller had already disabled it; restored on error.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
