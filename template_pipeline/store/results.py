"""What a write of one site's snapshot produces: its result, and the errors it can raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from template_pipeline.store.tables import SYNC_COUNT_COLUMNS


class Log(Protocol):
    """What the write path logs to: a ``logging.Logger`` or a Dagster log manager."""

    def info(self, msg: str, *args: Any) -> Any: ...
    def warning(self, msg: str, *args: Any) -> Any: ...


class MassDeleteRefusedError(Exception):
    """A snapshot would soft-delete too large a share of a site's live rows; nothing was written.

    A site answering with a truncated or empty list (a broken deploy, a wrong database behind the
    API) must not empty the Dashboard. The sync is rolled back and recorded as ``refused`` in
    ``template_sync_runs``. The IO manager turns it into a ``dagster.Failure`` that disallows
    retries: the assets' RetryPolicy would only fetch the same short list again, minutes apart.
    """

    def __init__(
        self,
        *,
        site: str,
        entity: str,
        live_rows: int,
        to_delete: int,
        max_delete_fraction: float,
        min_rows_for_guard: int,
    ) -> None:
        self.site = site
        self.entity = entity
        self.live_rows = live_rows
        self.to_delete = to_delete
        self.max_delete_fraction = max_delete_fraction
        self.min_rows_for_guard = min_rows_for_guard
        if to_delete >= live_rows:
            what = f"all {live_rows} live rows (the site served no valid {entity})"
        else:
            what = f"{to_delete} of {live_rows} live rows ({to_delete / live_rows:.0%})"
        super().__init__(
            f"refused to sync {entity} of site {site!r}: the snapshot would soft-delete "
            f"{what}, more than max_delete_fraction={max_delete_fraction:g} allows. Nothing "
            "was written. If the site really removed them, rerun with the IO manager's "
            "max_delete_fraction raised (1.0 disables the guard)."
        )

    def __reduce__(self):  # keyword-only __init__: tell pickle how to rebuild the error
        return (
            _rebuild_refused,
            (
                self.site,
                self.entity,
                self.live_rows,
                self.to_delete,
                self.max_delete_fraction,
                self.min_rows_for_guard,
            ),
        )


def _rebuild_refused(*args: Any) -> MassDeleteRefusedError:
    site, entity, live_rows, to_delete, fraction, min_rows = args
    return MassDeleteRefusedError(
        site=site,
        entity=entity,
        live_rows=live_rows,
        to_delete=to_delete,
        max_delete_fraction=fraction,
        min_rows_for_guard=min_rows,
    )


class SnapshotContractError(ValueError):
    """A batch row does not carry exactly the data columns of the entity's table."""


@dataclass
class SyncResult:
    """What one ``write_snapshot`` did to one site's slice of one table."""

    site: str
    entity: str
    status: str
    fetched: int = 0
    valid: int = 0
    rejected: int = 0
    duplicates: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    restored: int = 0
    new_fields: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float = 0.0
    # Up to PREVIEW_ROWS staged rows, restricted to the entity's preview columns.
    preview: list[dict[str, Any]] = field(default_factory=list)
    table: str = ""
    run_id: str = ""
    # Live (not soft-deleted) rows of the site after the sync.
    live_rows: int = 0

    def counts(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in SYNC_COUNT_COLUMNS}
